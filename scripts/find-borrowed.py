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


def borrowers(files):
    """Functions returning a pointer and taking a cJSON *: their answer may be borrowed."""
    out = set()
    for path in files:
        text = open(path, errors="replace").read()
        rx = r"^(?:static\s+)?(?:const\s+)?(?:char|cJSON)\s*\*\s*(\w+)\s*\(([^;{]*?)\)\s*\{"
        for m in re.finditer(rx, text, re.M):
            if re.search(r"\bcJSON\s*\*", m.group(2)):
                out.add(m.group(1))
    return out


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


def enclosing_loop(body, i, after):
    """Line of the for/while whose body holds line i (and which starts after line `after`),
    or -1: a crude indentation walk."""
    indent = len(body[i]) - len(body[i].lstrip())
    for k in range(i - 1, after, -1):
        ind = len(body[k]) - len(body[k].lstrip())
        if body[k].strip() and ind < indent:
            if re.match(r"\s*(for|while)\s*\(", body[k]):
                return k
            indent = ind
    return -1


def kills(line, obj, muts):
    o = re.escape(obj)
    if any(re.search(k.format(o=o), line) for k in KILLS):
        return True
    # a call of a mutator, or through a function pointer (s.fn(...), p->fn(...)), given obj
    return any((m.group(2) in muts or m.group(1)) and
               re.search(r"(?<![\w.>])%s\b(?!\s*->)" % o, m.group(3))
               for m in re.finditer(r"(\.|->)?\b(\w+)\s*\(([^;]*)", line))


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
                    loop = enclosing_loop(body, i, at)
                    used = [k for k in range(loop + 1, i) if loop >= 0 and
                            re.search(r"\b%s\b" % re.escape(var), body[k])]
                    if used:  # the loop comes back to that use after the kill
                        print("%s:%d: %s (from %s, line %d) used in a loop after line %d: %s" % (
                            path, base + used[0] + 1, var, root, base + at + 1, base + i + 1,
                            body[i].strip()))
                        break


def main():
    files = sys.argv[1:] or subprocess.run(
        ["git", "ls-files", "core/*.c", "plugins/*.c"], capture_output=True, text=True,
        check=True).stdout.split()
    muts = mutators(files)
    global BORROW
    extra = borrowers(files) - {"bh_json_print"}  # owned answers are not borrows
    BORROW = re.compile(BORROW.pattern.replace("(?:%s)" % BORROWERS,
                                               "(?:%s|%s)" % (BORROWERS, "|".join(sorted(extra)))))
    for path in files:
        scan(path, muts)


if __name__ == "__main__":
    main()
