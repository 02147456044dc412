#!/usr/bin/env bash
# Syntax-checks windows/*.ps1 and windows/*.psm1 (the shared module) with the tree-sitter PowerShell grammar (node + npm; no PowerShell is
# available on our Linux machines). The npm packages are installed under <target dir>/pwsh-syntax.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${CARGO_TARGET_DIR:-$root/target}/pwsh-syntax
command -v node >/dev/null && command -v npm >/dev/null || {
    echo "error: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
}
mkdir -p "$work"
cp "$root/scripts/pwsh-syntax/package.json" "$root/scripts/pwsh-syntax/package-lock.json" \
    "$root/scripts/pwsh-syntax/check.mjs" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
node "$work/check.mjs" "$root"/windows/*.ps1 "$root"/windows/*.psm1
