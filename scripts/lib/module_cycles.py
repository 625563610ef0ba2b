#!/usr/bin/env python3
"""Module cycles in Rust crates: sibling modules that import each other, directly or round a loop.

Usage: module_cycles.py [SRC_DIR ...]   (each the `src/` of one crate; default: every crate of
the repository, the `src/` beside each Cargo.toml outside target/)

Every path a file names (`use crate::a::b`, `super::c`, inline `crate::d::e::f(..)`, grouped
`use crate::{a, b::{c, d}}`, test modules included; comments and strings left out) is resolved
to the module that defines it. Module A depends on sibling B (children of one parent) when a
file under A names something under B. A parent and its own children are not a cycle (a `mod.rs`
re-exports what its children define); two or more siblings that reach each other are, at every
level of the tree. Prints each cycle and exits 1 if there is one, else prints the module count.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_START = re.compile(r"\b(crate|super|self)\s*::")


def module_of(src: Path, file: Path):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def strip(text: str) -> str:
    """Comments and string/char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(text: str, i: int):
    """Paths of the `use` tree or path expression starting at text[i]; returns (paths, end)."""
    paths, segs = [], []
    while True:
        m = re.compile(r"\s*(" + IDENT + r"|\{|\*)").match(text, i)
        if not m:
            return ([segs] if segs else []), i
        tok = m.group(1)
        if tok == "{":
            i = m.end()
            while True:
                sub, i = expand(text, i)
                paths.extend(segs + s for s in sub)
                m2 = re.compile(r"\s*(,|\})").match(text, i)
                if not m2:
                    return paths, i
                i = m2.end()
                if m2.group(1) == "}":
                    return paths, i
                if re.compile(r"\s*\}").match(text, i):
                    i = re.compile(r"\s*\}").match(text, i).end()
                    return paths, i
        if tok == "*":
            return [segs], m.end()
        segs = segs + [tok]
        i = m.end()
        m2 = re.compile(r"\s*::").match(text, i)
        if not m2:
            return [segs], i
        i = m2.end()


def inline_modules(text: str):
    """(start, end, name) of inline `mod name { .. }` blocks, for resolving `super`."""
    blocks = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        blocks.append((m.start(), j, m.group(1)))
    return blocks


def references(src: Path, file: Path, modules):
    here = module_of(src, file)
    text = strip(file.read_text())
    blocks = inline_modules(text)
    for m in PATH_START.finditer(text):
        if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_:"):
            continue
        # The module the path is written in: the file's, plus any inline module around it.
        scope = list(here) + [name for (a, b, name) in blocks if a < m.start() < b]
        head = m.group(1)
        paths, _ = expand(text, m.end())
        for segs in paths:
            base = [] if head == "crate" else scope[:-1] if head == "super" else scope
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
            full = tuple(base + segs)
            # The module that defines the item: the longest prefix that is a file module.
            for k in range(len(full), -1, -1):
                if full[:k] in modules:
                    yield full[:k]
                    break


def cycles(src: Path):
    # A binary beside a library is a crate of its own: the library's modules are lib.rs's.
    beside = (src / "lib.rs").exists()
    files = sorted(f for f in src.rglob("*.rs") if not (beside and f == src / "main.rs"))
    modules = {module_of(src, f) for f in files}
    edges = set()
    for f in files:
        a = module_of(src, f)
        for b in references(src, f, modules):
            # Lift both ends to the children of their closest common ancestor.
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            if k < len(a) and k < len(b):
                edges.add((a[: k + 1], b[: k + 1]))
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found, index, low, stack, on, counter = [], {}, {}, [], set(), [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found, len(modules)


def crate_sources():
    root = Path(__file__).resolve().parents[2]
    return sorted(
        m.parent / "src"
        for m in root.rglob("Cargo.toml")
        if "target" not in m.relative_to(root).parts and (m.parent / "src").is_dir()
    )


def main():
    bad = 0
    root = Path(__file__).resolve().parents[2]
    for src in [Path(a).resolve() for a in sys.argv[1:]] or crate_sources():
        found, count = cycles(src)
        name = src.relative_to(root) if src.is_relative_to(root) else src
        for comp in found:
            names = ", ".join("::".join(c) for c in comp)
            print(f"{name}: module cycle: {names}")
        bad += len(found)
        if not found:
            print(f"{name}: {count} modules, no cycle")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
