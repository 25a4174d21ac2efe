#!/usr/bin/env python3
"""Side-by-side tables: every counted autoglm-tune sampler against every Optuna sampler,
median log10 regret after 100 evaluations, one table per problem variant.

Usage (from the repo root; see BENCHMARKS.md for the commands that make the inputs):

    python3 benches/tune/compare.py DIR [--shifts 0,1,2,3,4,5]

For shift seed S (0 = the standard problems) it reads
  DIR/ours_sS*.json           runs of `examples/bbob` (any of gp, tpe, random, qmc, auto;
                              several files are merged)
  DIR/optuna_sS.json          runs of bench_optuna.py (tpe, cmaes, random)
  DIR/optuna_gp_sS.json       runs of bench_optuna.py --sampler gp; for S = 0 the shared
                              ../shared/bench/tune/optuna_gp_results.json is used if absent.
A missing file or sampler shows as "–" and is left out of the "best" columns.
"""
import glob
import json
import math
import os
import statistics
import sys

FUNCS = ["branin", "hartmann6", "rosenbrock", "ackley", "levy", "styblinski", "hpo_mixed"]
OURS = ["gp", "tpe", "random", "qmc", "auto"]
THEIRS = ["tpe", "cmaes", "random", "gp"]
SHARED_GP = os.path.join(os.path.dirname(__file__), "../../../shared/bench/tune/optuna_gp_results.json")


def log_regret(run):
    return math.log10(max(run["regret_at"]["100"], 1e-12))


def load(path):
    return json.load(open(path))["runs"] if os.path.exists(path) else []


def medians(runs):
    by = {}
    for r in runs:
        by.setdefault((r["function"], r["sampler"]), []).append(log_regret(r))
    return {k: (statistics.median(v), len(v)) for k, v in by.items()}


def fmt(x):
    return "–" if x is None else f"{x[0]:.2f}"


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    folder = args[0]
    shifts = [0, 1, 2, 3, 4, 5]
    if "--shifts" in args:
        shifts = [int(s) for s in args[args.index("--shifts") + 1].split(",")]
    summary = []
    for s in shifts:
        ours = medians([r for f in sorted(glob.glob(f"{folder}/ours_s{s}*.json")) for r in load(f)])
        gp_path = f"{folder}/optuna_gp_s{s}.json"
        if s == 0 and not os.path.exists(gp_path):
            gp_path = SHARED_GP
        theirs = medians(load(f"{folder}/optuna_s{s}.json") + load(gp_path))
        label = "standard problems" if s == 0 else f"shift seed {s}"
        seeds = sorted({n for (_, n) in list(ours.values()) + list(theirs.values())})
        print(f"\n{label}: median log10 regret after 100 evaluations (runs per cell: {seeds})\n")
        head = [f"autoglm {o}" for o in OURS] + ["best autoglm"]
        head += [f"Optuna {t}" for t in THEIRS] + ["best Optuna", "autoglm ≤ Optuna"]
        print("| function | " + " | ".join(head) + " |")
        print("|---" * (len(head) + 1) + "|")
        wins = 0
        for f in FUNCS:
            mine = [ours.get((f, o)) for o in OURS]
            other = [theirs.get((f, t)) for t in THEIRS]
            bo = min((m for m in mine if m), default=None)
            bp = min((m for m in other if m), default=None)
            ok = bo is not None and bp is not None and bo[0] <= bp[0]
            wins += ok
            cells = [fmt(m) for m in mine] + [fmt(bo)] + [fmt(m) for m in other] + [fmt(bp)]
            print(f"| {f} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
        print(f"\n{label}: autoglm-tune at least as good on {wins} of {len(FUNCS)}")
        summary.append((label, wins))
    print("\n" + ", ".join(f"{l}: {w}/7" for l, w in summary))
    overhead(folder, shifts[0])


def overhead(folder, s):
    """Sampler overhead on one variant: process CPU ms per trial (ask + suggest + tell),
    median over all trials of a run, then median over seeds; and, for the GP samplers,
    the mean CPU time of trials 91-100 on the 10-dimensional levy function."""
    ours = [r for f in sorted(glob.glob(f"{folder}/ours_s{s}*.json")) for r in load(f)]
    gp_path = f"{folder}/optuna_gp_s{s}.json"
    if s == 0 and not os.path.exists(gp_path):
        gp_path = SHARED_GP
    theirs = load(f"{folder}/optuna_s{s}.json") + load(gp_path)

    def cell(runs, f, smp):
        v = [r["overhead_cpu_ms_per_trial_median"] for r in runs if r["function"] == f and r["sampler"] == smp]
        return "–" if not v else f"{statistics.median(v):.2f}"

    print(f"\nCPU ms per trial (median over trials, then seeds), shift seed {s}:\n")
    head = [f"autoglm {o}" for o in OURS] + [f"Optuna {t}" for t in THEIRS]
    print("| function | " + " | ".join(head) + " |")
    print("|---" * (len(head) + 1) + "|")
    for f in FUNCS:
        cells = [cell(ours, f, o) for o in OURS] + [cell(theirs, f, t) for t in THEIRS]
        print(f"| {f} | " + " | ".join(cells) + " |")
    for smp in ["gp", "auto"]:
        late = [statistics.mean(r["overhead_cpu_ms"][90:100]) for r in ours
                if r["function"] == "levy" and r["sampler"] == smp and "overhead_cpu_ms" in r]
        if late:
            print(f"\nautoglm {smp}, levy (10 dimensions), mean CPU ms of trials 91-100 per seed: "
                  f"median {statistics.median(late):.1f}, max {max(late):.1f} (n={len(late)})")


if __name__ == "__main__":
    main()
