"""Scaling out one study over worker processes (issue 28, point 3): the shared tune
protocol's problems (shared/bench/tune/bench_optuna.py) with a simulated objective
cost (a sleep), W workers sharing one Optuna journal file, ours (the `bbob` example's
worker mode) and Optuna's side by side with the same sampler kind and their parallel
defaults (TPE: constant liar on both).

usage: python benches/tune/parallel.py --bbob target/release/examples/bbob \
           --problems problems.json [--functions branin,...] [--workers 1,2,4,8] \
           [--seeds 5] [--budget 100] [--cost 0.05] [--slots 8] --out results.json
       python benches/tune/parallel.py --table results.json

Per run: the regret of the best of the study's first BUDGET complete trials (by
number), and the wall time of the trial phase (first trial started to last trial
finished, from the journal's timestamps: process start-up is left out). Runs go
side by side, at most SLOTS worker processes at a time (sleeps use no CPU).
The problems file is bench_optuna.py --export-problems FILE (standard problems).
"""
import argparse
import datetime
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "bench", "tune", "bench_optuna.py")


def load_bench(path):
    spec = importlib.util.spec_from_file_location("bench_optuna", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def optuna_worker(args):
    """One Optuna worker (this script run with --optuna-worker)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    bench = load_bench(args.bench)
    objective, _, _ = bench.make_problem(args.function)
    storage = JournalStorage(JournalFileBackend(args.journal))
    study = optuna.create_study(study_name="bbob", storage=storage, load_if_exists=True,
                                sampler=bench.make_sampler(args.sampler, args.seed * 1000 + args.worker))

    def obj(trial):
        f = objective(trial)
        time.sleep(args.cost)
        return f()
    study.optimize(obj, callbacks=[optuna.study.MaxTrialsCallback(
        args.budget, states=(optuna.trial.TrialState.COMPLETE,))])


def summary(journal, budget, f_opt):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = optuna.load_study(study_name="bbob", storage=JournalStorage(JournalFileBackend(journal))).trials
    done = [t for t in sorted(trials, key=lambda t: t.number) if t.state == optuna.trial.TrialState.COMPLETE]
    first = done[:budget]
    best = min(t.value for t in first)
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return {"regret": best - f_opt, "trials": len(trials), "wall_s": (end - start).total_seconds()}


def launch(args, impl, function, seed, workers, d):
    journal = os.path.join(d, f"{impl}-{function}-s{seed}-w{workers}.log")
    if impl == "autoglm":
        # The study is created before the workers start, so they do not race to.
        cmd = lambda w: [args.bbob, "--problems", args.problems, "--sampler", args.sampler,
                         "--budget", str(args.budget), "--seed-offset", str(seed), "--journal", journal,
                         "--function", function, "--worker", str(w), "--cost", str(args.cost)]
    else:
        cmd = lambda w: [sys.executable, __file__, "--optuna-worker", "--bench", args.bench,
                         "--function", function, "--sampler", args.sampler, "--budget", str(args.budget),
                         "--seed", str(seed), "--worker", str(w), "--journal", journal, "--cost", str(args.cost)]
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="bbob", storage=JournalStorage(JournalFileBackend(journal)))
    procs = [subprocess.Popen(cmd(w), stdout=subprocess.DEVNULL) for w in range(workers)]
    return journal, procs


def run(args):
    bench = load_bench(args.bench)
    jobs = [(impl, f, s, w) for w in args.workers for f in args.functions for s in range(args.first_seed, args.first_seed + args.seeds)
            for impl in ("autoglm", "optuna")]
    results, active = [], []
    with tempfile.TemporaryDirectory() as d:
        while jobs or active:
            while jobs and sum(a[3] for a in active) + jobs[0][3] <= max(args.slots, jobs[0][3]):
                impl, f, s, w = jobs.pop(0)
                journal, procs = launch(args, impl, f, s, w, d)
                active.append((impl, f, s, w, journal, procs))
            time.sleep(0.05)
            for a in list(active):
                impl, f, s, w, journal, procs = a
                if all(p.poll() is not None for p in procs):
                    active.remove(a)
                    if any(p.returncode for p in procs):
                        sys.exit(f"FAIL: a worker of {impl} {f} seed {s} w{w} failed")
                    _, f_opt, _ = bench.make_problem(f)
                    r = summary(journal, args.budget, f_opt)
                    r.update(impl=impl, function=f, seed=s, workers=w)
                    results.append(r)
                    print(f"{impl:7} {f:11} seed={s} w={w} regret={r['regret']:.3e} wall={r['wall_s']:.2f}s",
                          file=sys.stderr)
    meta = {"date": datetime.date.today().isoformat(), "budget": args.budget, "cost_s": args.cost,
            "sampler": args.sampler, "seeds": args.seeds, "first_seed": args.first_seed, "workers": args.workers, "slots": args.slots,
            "optuna": __import__("optuna").__version__}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "runs": results}, f)


def table(paths):
    """The runs of every file (seeds told apart by number), with a one-sided
    Mann-Whitney U test per cell: p of "ours' regret is lower than Optuna's"
    (`p ours worse`, small when ours is worse) from scipy."""
    from scipy.stats import mannwhitneyu
    docs = [json.load(open(p)) for p in paths]
    runs = [r for d in docs for r in d["runs"]]
    seen = {}
    for r in runs:
        key = (r["impl"], r["function"], r["workers"], r["seed"])
        if key in seen:
            sys.exit(f"FAIL: {key} is in two files")
        seen[key] = r
    doc = {"meta": [d["meta"] for d in docs]}
    lg = lambda r: max(math.log10(max(r, 1e-300)), -12)
    fns = sorted({r["function"] for r in runs})
    ws = sorted({r["workers"] for r in runs})
    print(f"{doc['meta']}\n")
    print("| function | workers | seeds | median log10 regret: autoglm [IQR] | Optuna [IQR] | p ours worse | trial-phase wall s: autoglm / Optuna (medians) | speed-up over 1 worker: autoglm / Optuna |")
    print("|---|---|---|---|---|---|---|---|")

    def q(v):
        v = sorted(v)
        qs = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        return f"{statistics.median(v):.2f} [{qs[0]:.2f}, {qs[2]:.2f}]"
    for f in fns:
        base = {impl: statistics.median(r["wall_s"] for r in runs if r["function"] == f and r["impl"] == impl
                                        and r["workers"] == ws[0]) for impl in ("autoglm", "optuna")}
        for w in ws:
            sel = {impl: [r for r in runs if r["function"] == f and r["impl"] == impl and r["workers"] == w]
                   for impl in ("autoglm", "optuna")}
            wall = {impl: statistics.median(r["wall_s"] for r in sel[impl]) for impl in sel}
            ours, theirs = ([lg(r["regret"]) for r in sel[i]] for i in ("autoglm", "optuna"))
            # Small p: Optuna's regret tends to be lower (ours worse).
            p = mannwhitneyu(theirs, ours, alternative="less").pvalue
            print(f"| {f} | {w} | {len(ours)} | {q(ours)} | "
                  f"{q(theirs)} | {p:.3f} | {wall['autoglm']:.2f} / {wall['optuna']:.2f} | "
                  f"{base['autoglm'] / wall['autoglm']:.2f} / {base['optuna'] / wall['optuna']:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--table", nargs="+", help="result files to tabulate together")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--optuna-worker", action="store_true")
    ap.add_argument("--bench", default=SHARED)
    ap.add_argument("--bbob")
    ap.add_argument("--problems")
    ap.add_argument("--functions", default="branin,hartmann6,rosenbrock,ackley,levy,styblinski,hpo_mixed")
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--cost", type=float, default=0.05)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--out")
    # worker mode
    ap.add_argument("--function")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--worker", type=int)
    ap.add_argument("--journal")
    a = ap.parse_args()
    if a.table:
        return table(a.table)
    if a.optuna_worker:
        return optuna_worker(a)
    a.functions = a.functions.split(",")
    a.workers = [int(w) for w in a.workers.split(",")]
    run(a)


if __name__ == "__main__":
    main()
