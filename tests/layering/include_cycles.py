#!/usr/bin/env python3
"""Fails (exit 1) when two modules of the core include each other, directly or around a
circle. A module is a source stem: foo.c, foo.h and foo_int.h are module foo. Includes are
quoted includes, resolved by file name within the tree."""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def module(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[:-4] if stem.endswith('_int') else stem


def graph(root):
    edges = {}
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(('.c', '.h')):
                continue
            m = module(f)
            edges.setdefault(m, set())
            with open(os.path.join(d, f), errors='replace') as fh:
                for line in fh:
                    hit = INCLUDE.match(line)
                    if hit and module(hit.group(1)) != m:
                        edges[m].add(module(hit.group(1)))
    return {m: {t for t in ts if t in edges} for m, ts in edges.items()}


def find_cycle(edges):
    """A list of modules forming a cycle, or None (iterative DFS, colours)."""
    colour = {m: 0 for m in edges}  # 0 new, 1 on the path, 2 done
    for start in sorted(edges):
        if colour[start]:
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        colour[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def main():
    edges = graph(sys.argv[1])
    cycle = find_cycle(edges)
    if cycle:
        print('include cycle: ' + ' -> '.join(cycle))
        return 1
    print(f'{len(edges)} modules, no include cycle')
    return 0


if __name__ == '__main__':
    sys.exit(main())
