#!/usr/bin/env python3
"""Digest of `ncu -i REP --page source --print-source sass --csv`: where the warps of a
kernel stall, by SASS instruction (the top rows) and by opcode (the sums).

    python3 bench/ncu_source.py SOURCE.csv [TOP]"""
import csv
import sys
from collections import defaultdict


def main():
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f)]
    head = next((i for i, r in enumerate(rows) if any("Source" == c.strip() for c in r)), None)
    if head is None:
        print("no header with a Source column; first lines:", rows[:3])
        return 1
    cols = rows[head]
    src = cols.index("Source")
    stall = next((i for i, c in enumerate(cols) if "Stall Sampling (All" in c), None)
    noissue = next((i for i, c in enumerate(cols) if "Stall Sampling (Not" in c), None)
    addr = next((i for i, c in enumerate(cols) if c.strip() in ("Address", "# Address")), 0)
    if stall is None:
        print("columns:", cols)
        return 1

    def num(r, i):
        try:
            return float(r[i].replace(",", "")) if i is not None and i < len(r) and r[i] else 0.0
        except ValueError:
            return 0.0

    body = [r for r in rows[head + 1:] if len(r) > src]
    total = sum(num(r, stall) for r in body) or 1.0
    print(f"# {len(body)} SASS lines, {total:.0f} stall samples")
    by_op = defaultdict(float)
    for r in body:
        op = r[src].strip().split(" ")[0].split(".")[0] if r[src].strip() else "?"
        if op.startswith("@"):
            op = r[src].strip().split(" ")[1].split(".")[0]
        by_op[op] += num(r, stall)
    print("# by opcode (share of all samples)")
    for op, v in sorted(by_op.items(), key=lambda x: -x[1])[:20]:
        print(f"  {100 * v / total:5.1f}%  {op}")
    print(f"# top {top} instructions: samples (not issued) address source")
    for r in sorted(body, key=lambda r: -num(r, stall))[:top]:
        print(f"  {100 * num(r, stall) / total:5.1f}% ({100 * num(r, noissue) / total:4.1f}%)  {r[addr]}  {r[src].strip()[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
