#!/usr/bin/env python3
"""Turns callgrind profiles of the hub into LLD's symbol ordering file.

    code-order.py LINK_MAP BINARY PROFILE... > packaging/hearth.order

LINK_MAP is the hub's link map (build.rs writes it when BUILD_HEARTH_LINK_MAP is
set), BINARY the path the profiles name as the executable (callgrind's
`ob=`), each PROFILE a callgrind file written with `--dump-instr=yes`, most
important first. Every executed instruction of BINARY is placed in the input
section the link map gives for its address; with `-ffunction-sections` (Rust
and the C code the build compiles) each function has one, named after its
symbol. Functions come out by how many profiles ran them (code every run
needs first), then by the first profile that ran them, then in their old
order, so the code a hub runs lies together at the front of `.text`.
Sections that hold more than one function (plain `.text`: assembly, libc's
start files) cannot be moved and are left out.
"""

import bisect
import re
import sys

SECTION = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S.*:\((\.text[^)]*)\)\s*$")
PREFIXES = (".text.unlikely.", ".text.startup.", ".text.hot.", ".text.exit.", ".text.")


def sections(path):
    """(start, end, symbol) of every movable code input section, by address."""
    out = []
    for line in open(path, errors="replace"):
        m = SECTION.match(line)
        if not m:
            continue
        start, size, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
        sym = next((name[len(p):] for p in PREFIXES if name.startswith(p)), "")
        if size and sym:
            out.append((start, start + size, sym))
    out.sort()
    return out


def executed(path, binary):
    """Addresses of BINARY's instructions that a callgrind profile ran."""
    names, ob, in_obj, last, addrs = {}, None, False, 0, set()
    # `ob=(N) path` names object N once; later lines say only `ob=(N)`.
    for line in open(path, errors="replace"):
        if not line.strip():
            continue
        c = line[0]
        if c.isalpha():
            key, _, value = line.rstrip("\n").partition("=")
            if key in ("ob", "cob"):
                m = re.match(r"\((\d+)\)(?: (.*))?", value)
                name = value
                if m:
                    if m.group(2) is not None:
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1))
                if key == "ob":
                    ob = name
            elif key == "fn":
                in_obj = ob == binary
            continue
        if c not in "0123456789+-*":
            continue
        tok = line.split()[0]
        if tok.startswith("0x"):
            last = int(tok, 16)
        elif tok[0] == "+":
            last += int(tok[1:])
        elif tok[0] == "-":
            last -= int(tok[1:])
        if in_obj:
            addrs.add(last)
    return addrs


def main():
    link_map, binary, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
    secs = sections(link_map)
    starts = [s for s, _, _ in secs]
    hits = []
    for profile in profiles:
        hit = set()
        for a in executed(profile, binary):
            i = bisect.bisect_right(starts, a) - 1
            if i >= 0 and a < secs[i][1]:
                hit.add(i)
        hits.append(hit)
    ran = set().union(*hits)
    # Code more runs needed first; among equals, by the first run that
    # needed it; then in the old order.
    def key(i):
        runs = [n for n, hit in enumerate(hits) if i in hit]
        return (-len(runs), runs[0], i)

    order = sorted(ran, key=key)
    print("# The hub's functions in the order a running hub needs them (issue 14).")
    print("# Written by benches/code-order.sh; read by build.rs. Do not edit.")
    print(f"# {len(order)} functions, {sum(secs[i][1] - secs[i][0] for i in order)} bytes of code")
    for i in order:
        print(secs[i][2])
    for n, hit in enumerate(hits, 1):
        size = sum(secs[i][1] - secs[i][0] for i in hit)
        print(f"profile {n}: {len(hit)} functions, {size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
