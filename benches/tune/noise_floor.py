#!/usr/bin/env python3
"""Noise floor of issue 25's point-5 criterion on the shared tune protocol.

The criterion: comparing a new sampler version with an old one, no function x
sampler pair's median log10 regret after 100 evaluations gets worse by more than
THRESHOLD in more than one variant. This script asks how often an *unchanged*
sampler fails it against itself: for every (variant, function, sampler) cell of the
OLD runs it draws two independent bootstrap samples of the seeds (as many seeds as
the runs hold, or --seeds) and counts how often the second median exceeds the first
by more than THRESHOLD; from those per-cell probabilities it simulates the whole
criterion. With NEW given it also sets the observed count of worse-by-more-than-
THRESHOLD cells (new - old) beside the count expected under no change.

    python3 benches/tune/noise_floor.py OLD_DIR [NEW_DIR] [--seeds N] [--threshold 0.1]

OLD_DIR and NEW_DIR hold ours_sS.json files from
`cargo run --release -p autoglm-tune --example bbob -- ... --out DIR/ours_sS.json`.
"""
import argparse
import json
import math
import os
import random
import statistics

FUNCS = ["branin", "hartmann6", "rosenbrock", "ackley", "levy", "styblinski", "hpo_mixed"]
SAMPLERS = ["gp", "tpe", "auto"]


def load(d):
    out = {}
    for s in range(6):
        p = os.path.join(d, f"ours_s{s}.json")
        if not os.path.exists(p):
            continue
        for r in json.load(open(p))["runs"]:
            key = (s, r["function"], r["sampler"])
            out.setdefault(key, []).append(math.log10(max(r["regret_at"]["100"], 1e-12)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new", nargs="?")
    ap.add_argument("--seeds", type=int, default=0, help="seeds per sample (default: all)")
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--boot", type=int, default=1000)
    a = ap.parse_args()
    rng = random.Random(1)
    old = load(a.old)
    variants = sorted({k[0] for k in old})
    p = {}
    for f in FUNCS:
        for s in SAMPLERS:
            for v in variants:
                x = old.get((v, f, s))
                if not x:
                    continue
                n = a.seeds or len(x)
                worse = sum(
                    statistics.median(rng.choices(x, k=n)) - statistics.median(rng.choices(x, k=n))
                    > a.threshold
                    for _ in range(a.boot)
                )
                p[(v, f, s)] = worse / a.boot
    pairs = [(f, s) for f in FUNCS for s in SAMPLERS]
    fails, sims = 0, 4000
    for _ in range(sims):
        if any(sum(rng.random() < p.get((v, f, s), 0.0) for v in variants) > 1 for f, s in pairs):
            fails += 1
    n = a.seeds or len(next(iter(old.values())))
    print(f"variants {variants}, {n} seeds per sample, threshold {a.threshold}")
    print("| function | sampler | P(worse > threshold) per variant, unchanged sampler |")
    print("|---|---|---|")
    for f, s in pairs:
        print(f"| {f} | {s} | " + " ".join(f"{p[(v, f, s)]:.2f}" for v in variants) + " |")
    print(f"probability that an unchanged sampler fails the criterion: {fails / sims:.3f}")
    expected = sum(p.values())
    print(f"cells worse by > {a.threshold} expected under no change: {expected:.1f} of {len(p)}")
    if a.new:
        new = load(a.new)
        worse = sum(
            statistics.median(new[k]) - statistics.median(old[k]) > a.threshold
            for k in p
            if k in new
        )
        better = sum(
            statistics.median(old[k]) - statistics.median(new[k]) > a.threshold
            for k in p
            if k in new
        )
        print(f"observed new - old: {worse} cells worse by > {a.threshold}, {better} better")


if __name__ == "__main__":
    main()
