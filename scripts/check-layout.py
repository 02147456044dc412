#!/usr/bin/env python3
"""The workspace's layout rules: no Rust source file over 800 lines, and no import circle between
files (a file that, through `use` paths and inline `crate::`/`super::` paths, reaches a file that
reaches it back). The driver's FFI layer and the safe code it calls back into (`src/ffi` <->
`src/sensor.rs`, `src/delivery.rs`) are the one allowed circle: the kernel calls the FFI layer,
which calls the sensor, which asks the FFI layer for kernel services.

    scripts/check-layout.py          # exit 1 with one line per problem

Paths are resolved the way rustc resolves modules (`a.rs` or `a/mod.rs`, `mod x;` beside it); a
path names the deepest module file it reaches, and items named by a path belong to that module's
file. An inline `mod tests { use super::* }` refers to its own file and is no edge.
"""
import os
import re
import sys

MAX_LINES = 800
# Each pair is allowed to import each other (the callback boundary), by file prefix.
ALLOWED = [("src/ffi/", "src/sensor.rs"), ("src/ffi/", "src/delivery.rs")]
SKIP_DIRS = {"target", ".git", "fuzz/target"}


def crate_roots(top):
    """(crate dir, source root file) of every crate: the root package and crates/*."""
    roots = []
    for base in ["."] + [os.path.join("crates", d) for d in sorted(os.listdir(os.path.join(top, "crates")))]:
        src = os.path.join(top, base, "src")
        if os.path.isfile(os.path.join(src, "lib.rs")):
            roots.append((base, os.path.join(src, "lib.rs")))
        elif os.path.isfile(os.path.join(src, "main.rs")):
            roots.append((base, os.path.join(src, "main.rs")))
    return roots


def module_files(root_file):
    """Map module path tuple -> file for one crate, following `mod x;` declarations."""
    modules = {}

    def visit(path, file, is_dir_owner):
        modules[path] = file
        here = os.path.dirname(file)
        child_dir = here if is_dir_owner else os.path.join(here, os.path.splitext(os.path.basename(file))[0])
        text = open(file, encoding="utf-8").read()
        for m in re.finditer(r'(?m)^\s*(?:#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', text):
            explicit, name = m.group(1), m.group(2)
            if explicit:
                candidate = os.path.join(here, explicit)
                if os.path.isfile(candidate):
                    visit(path + (name,), candidate, False)
                continue
            a = os.path.join(child_dir, name + ".rs")
            b = os.path.join(child_dir, name, "mod.rs")
            if os.path.isfile(a):
                visit(path + (name,), a, False)
            elif os.path.isfile(b):
                visit(path + (name,), b, True)

    visit((), root_file, True)
    return modules


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = tree.strip()
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix = tree[:i]
                inner = tree[i + 1 : tree.rindex("}")]
                parts, start, d = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        parts.append(inner[start:j])
                        start = j + 1
                parts.append(inner[start:])
                out = []
                for p in parts:
                    if p.strip():
                        out.extend(prefix + q for q in expand_use_tree(p))
                return out
            depth += 1
    return [re.sub(r"\s+as\s+\w+$", "", tree)]


def inline_modules(text):
    """(start, end, name) of every `mod name { ... }` block, by brace matching."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        spans.append((m.start(), i, m.group(1)))
    return spans


def references(text):
    """(path string, position) for every crate/super/self path of a file."""
    refs = []
    for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        for p in expand_use_tree(m.group(1).replace("\n", " ")):
            refs.append((p.replace(" ", ""), m.start(1)))
    for m in re.finditer(r"(?m)^\s*(.*)$", text):
        line = m.group(1)
        if re.match(r"(?:pub(?:\([^)]*\))?\s+)?use\s", line):
            continue
        for p in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", line):
            refs.append((p.group(1), m.start(1) + p.start()))
    return refs


def resolve(path, own, modules):
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = own
        rest = segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None
    while base and base not in modules:
        base = base[:-1]  # an inline module lives in its parent's file
    best = base
    for i in range(len(rest)):
        candidate = base + tuple(rest[: i + 1])
        if candidate in modules:
            best = candidate
        else:
            break
    return modules.get(best)


def main():
    top = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    problems = []
    edges = {}
    for base, root in crate_roots(top):
        modules = module_files(root)
        for mod_path, file in modules.items():
            text = strip_comments(open(file, encoding="utf-8").read())
            spans = inline_modules(text)
            for raw, pos in references(text):
                own = mod_path + tuple(name for start, end, name in spans if start < pos < end)
                target = resolve(raw, own, modules)
                if target and target != file:
                    edges.setdefault(os.path.relpath(file, top), set()).add(os.path.relpath(target, top))
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel, d)) not in SKIP_DIRS and d not in (".git", "target")]
        for f in filenames:
            if f.endswith(".rs"):
                p = os.path.join(dirpath, f)
                n = sum(1 for _ in open(p, encoding="utf-8"))
                if n > MAX_LINES:
                    problems.append(f"{os.path.relpath(p, top)}: {n} lines (at most {MAX_LINES})")

    def allowed(a, b):
        return any((a.startswith(x) and b == y) or (b.startswith(x) and a == y) for x, y in ALLOWED)

    seen = set()
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if a in edges.get(b, set()) and (b, a) not in seen and not allowed(a, b):
                seen.add((a, b))
                problems.append(f"import circle: {a} <-> {b}")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layout: every file at most {MAX_LINES} lines, no import circle between files")


if __name__ == "__main__":
    main()
