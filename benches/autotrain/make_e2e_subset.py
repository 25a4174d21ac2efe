#!/usr/bin/env python3
"""Writes the fixed 10,000-row E2E training subset of issue 25's gate protocol.

Rows are drawn without replacement from ../shared/data/e2e/train.jsonl (42,061 rows)
with Python's random.Random(SEED).sample over the row indices and written in file
order. The seed is fixed, so every machine makes the same file (its SHA-256 is
printed and checked by search.sh).

    python3 benches/autotrain/make_e2e_subset.py OUT.jsonl [--rows 10000] [--seed 20261207]
"""

import argparse
import hashlib
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "data" / "e2e" / "train.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--source", type=pathlib.Path, default=SOURCE)
    a = ap.parse_args()
    lines = a.source.read_bytes().splitlines(keepends=True)
    if a.rows > len(lines):
        print(f"{a.source}: {len(lines)} rows, fewer than {a.rows}", file=sys.stderr)
        return 1
    keep = sorted(random.Random(a.seed).sample(range(len(lines)), a.rows))
    data = b"".join(lines[i] for i in keep)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(data)
    print(f"{a.out}: {a.rows} of {len(lines)} rows, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
