#!/usr/bin/env python3
"""Heuristic review aid (docs/testing.md): lists uses of a pointer borrowed from a cJSON object
or a buffer after that object may have been freed, replaced, mutated or re-read in the same
function. Noisy by design; every hit is to be read by hand. The ASan pass is the real check.
Usage: scripts/find-borrowed.py [files...]   (default: every C file of core/ and plugins/)"""
import re
import subprocess
import sys

BORROWERS = (r"bh_json_str|bh_json_label|bh_json_get|bh_json_obj|cJSON_GetObjectItemCaseSensitive|"
             r"cJSON_GetObjectItem|cJSON_GetArrayItem|cJSON_GetStringValue|strchr|strrchr|strstr|"
             r"memchr|strtok_r|strpbrk|bh_image_desc_digest|bh_image_index_pick")
BORROW = re.compile(r"\b(\w+)\s*=\s*(?:\([^)]*\)\s*)?(?:%s)\s*\(\s*&?\s*([\w>.\-]+)" % BORROWERS)
FIELD = re.compile(r"\b(\w+)\s*=\s*(\w+)(?:->|\.)(?:valuestring|child|string)\b")
ITER = re.compile(r"cJSON_ArrayForEach\s*\(\s*(\w+)\s*,\s*([\w>.\-]+)")
KILLS = [r"cJSON_Delete\s*\(\s*{o}\s*\)", r"free\s*\(\s*{o}\s*\)",
         r"cJSON_(?:Delete|Replace|Detach)\w*\s*\(\s*{o}\b", r"bh_json_(?:set_\w+|obj)\s*\(\s*{o}\b",
         r"&\s*{o}\b(?!\s*->)", r"(?<![=!<>\w.>])\b{o}\s*=(?!=)"]


def mutators(files):
    """Functions taking a non-const cJSON * parameter: passing the object to one may change it."""
    out = {"cJSON_AddItemToObject", "cJSON_AddItemToArray", "cJSON_SetValuestring"}
    for path in files:
        text = open(path, errors="replace").read()
        for m in re.finditer(r"^(?:static\s+)?[\w\s\*]+?\b(\w+)\s*\(([^;{]*?)\)\s*\{", text, re.M):
            for p in m.group(2).split(","):
                p = p.strip()
                if re.search(r"\bcJSON\s*\*", p) and not p.startswith("const") and "**" not in p:
                    out.add(m.group(1))
    return out


def functions(text):
    lines, start = text.split("\n"), None
    for i, line in enumerate(lines):
        if line.startswith("{"):
            start = i
        elif line.startswith("}") and start is not None:
            yield start, [re.sub(r'"(\\.|[^"\\])*"', '""', re.sub(r"/\*.*?\*/|//.*", "", l))
                          for l in lines[start:i + 1]]
            start = None


def kills(line, obj, muts):
    o = re.escape(obj)
    if any(re.search(k.format(o=o), line) for k in KILLS):
        return True
    return any(m.group(1) in muts and re.search(r"(?<![\w.>])%s\b(?!\s*->)" % o, m.group(2))
               for m in re.finditer(r"\b(\w+)\s*\(([^;]*)", line))


def scan(path, muts):
    for base, body in functions(open(path, errors="replace").read()):
        borrowed = {}
        for i, line in enumerate(body):
            for rx in (BORROW, FIELD, ITER):
                for m in rx.finditer(line):
                    var, obj = m.group(1), m.group(2)
                    borrowed[var] = (borrowed.get(obj, (obj, i))[0], i)
        for var, (root, at) in borrowed.items():
            killed = None
            for i in range(at + 1, len(body)):
                if killed is not None and re.search(r"\b%s\b" % re.escape(var), body[i]):
                    if not re.search(r"\b%s\s*=(?!=)" % re.escape(var), body[i]):
                        print("%s:%d: %s (from %s, line %d) used after line %d: %s" % (
                            path, base + i + 1, var, root, base + at + 1, base + killed + 1,
                            body[killed].strip()))
                    break
                if killed is None and var != root and kills(body[i], root, muts):
                    killed = i


def main():
    files = sys.argv[1:] or subprocess.run(
        ["git", "ls-files", "core/*.c", "plugins/*.c"], capture_output=True, text=True,
        check=True).stdout.split()
    muts = mutators(files)
    for path in files:
        scan(path, muts)


if __name__ == "__main__":
    main()
