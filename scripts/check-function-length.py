#!/usr/bin/env python3
"""Fails when a function outside tests is longer than 70 lines.

A function that reads better whole (a table, a match over every variant) may be longer if
its doc comment says why, with the words "Long by design". Test code is exempt: files under
`tests/`, `benches/`, and `#[cfg(test)]` modules. Run from the workspace root.
"""
import os
import re
import sys

LIMIT = 70
ROOTS = ["state/src", "raft-store/src", "broker/src", "client/src", "cluster-tests/src", "proto/src", "sim/src"]
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def code_only(line):
    """The line without string literals and line comments (enough to count braces)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def test_module_lines(lines):
    """Line numbers inside `#[cfg(test)]` items."""
    inside = set()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]":
            depth, started, j = 0, False, i + 1
            while j < len(lines):
                code = code_only(lines[j])
                depth += code.count("{") - code.count("}")
                started = started or "{" in code
                inside.add(j)
                if started and depth <= 0:
                    break
                j += 1
            i = j
        i += 1
    return inside


def long_functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    skip = test_module_lines(lines)
    found = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m or i in skip:
            continue
        depth, started, end = 0, False, None
        for j in range(i, len(lines)):
            code = code_only(lines[j])
            if not started and ";" in code and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            started = started or "{" in code
            if started and depth <= 0:
                end = j
                break
        if end is None:
            continue
        length = end - i + 1
        doc = "\n".join(lines[max(0, i - 12):i])
        if length > LIMIT and "Long by design" not in doc:
            found.append((path, i + 1, m.group(6), length))
    return found


def main():
    found = []
    for root in ROOTS:
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                if name.endswith(".rs"):
                    found += long_functions(os.path.join(dirpath, name))
    for path, line, name, length in found:
        print(f"{path}:{line}: fn {name} is {length} lines (at most {LIMIT}, or say why: \"Long by design\")")
    if found:
        sys.exit(1)
    print(f"every function outside tests is at most {LIMIT} lines")


if __name__ == "__main__":
    main()
