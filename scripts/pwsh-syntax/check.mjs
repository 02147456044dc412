// Parses PowerShell scripts with the tree-sitter grammar and reports syntax errors (ERROR or
// MISSING nodes). A syntax check only: it cannot tell whether a cmdlet exists or a script works.
import { Parser, Language } from 'web-tree-sitter';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const grammar = require.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm');

await Parser.init();
const parser = new Parser();
parser.setLanguage(await Language.load(grammar));

let failed = 0;
for (const file of process.argv.slice(2)) {
  const tree = parser.parse(fs.readFileSync(file, 'utf8'));
  const errors = [];
  const walk = (node) => {
    if (node.type === 'ERROR' || node.isMissing) errors.push(node);
    for (const child of node.children) walk(child);
  };
  walk(tree.rootNode);
  for (const node of errors) {
    const where = `${file}:${node.startPosition.row + 1}:${node.startPosition.column + 1}`;
    const what = node.isMissing ? `missing ${node.type}` : 'syntax error';
    console.log(`${where}: ${what} near ${JSON.stringify(node.text.slice(0, 60))}`);
  }
  console.log(`${file}: ${errors.length === 0 ? 'ok' : `${errors.length} syntax errors`}`);
  failed += errors.length;
}
process.exit(failed === 0 ? 0 : 1);
