#!/usr/bin/env python3
"""Fails when modules of a workspace crate import each other in a circle.

A module is a source file; A depends on B when A's code (comments aside) names a path into B
(`crate::x::y`, `super::y`, or a sibling through `self::`). Cargo already forbids circles
between crates; this keeps each crate's rooms layered too. Run from the workspace root.
"""
import os
import re
import sys

CRATES = ["state/src", "raft-store/src", "broker/src", "client/src", "cluster-tests/src", "proto/src", "sim/src"]
PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^}]*)\}", re.S)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.split("\n"))


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def resolve(modules, parts):
    """The longest module prefix of `parts` (a path from the crate root)."""
    for n in range(len(parts), 0, -1):
        if tuple(parts[:n]) in modules:
            return tuple(parts[:n])
    return None


def edges_of(modules, module, text):
    """Modules that `module`'s code names. `super` is the parent of the file's module: for
    `a/b.rs` that is `a`, for `a/mod.rs` the crate root."""
    refs = [(m.group(1), m.group(2)) for m in PATH.finditer(text)]
    for g in GROUP.finditer(text):
        for item in g.group(3).split(","):
            head = item.strip().split(" ")[0].split("::")[0]
            if head and head != "self":
                refs.append((g.group(1), g.group(2) + "::" + head))
    found = set()
    for kind, rest in refs:
        base = [] if kind == "crate" else list(module[:-1])
        target = resolve(modules, base + [p for p in rest.split("::") if p])
        if target and target != module:
            found.add(target)
    return found


def cycles(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs") and "bin" not in dirpath.split(os.sep):
                path = os.path.join(dirpath, name)
                files[module_of(root, path)] = path
    graph = {}
    for module, path in files.items():
        is_dir = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        with open(path, encoding="utf-8") as f:
            text = strip_comments(f.read())
        deps = edges_of(files, module, text)
        # A folder's mod.rs only declares and re-exports its children: not an edge.
        graph[module] = {d for d in deps if not (is_dir and d[: len(module)] == module)}
    return strongly_connected(graph)


def strongly_connected(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    bad = False
    for root in CRATES:
        for comp in cycles(root):
            bad = True
            names = " <-> ".join("::".join(m) or "lib" for m in comp)
            print(f"{root}: modules import each other in a circle: {names}")
    if bad:
        sys.exit(1)
    print("no module import circles in " + ", ".join(CRATES))


if __name__ == "__main__":
    main()
