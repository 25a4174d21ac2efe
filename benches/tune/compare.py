#!/usr/bin/env python3
"""Side-by-side table: autoglm-tune (gp, tpe) against Optuna (tpe, random, and gp where
figures exist) per problem variant, median log10 regret at 100 evaluations.

Inputs (see BENCHMARKS.md for the commands that make them), run from the repo root:
  /tmp/rust_gp2.json, /tmp/rust_s0.json, /tmp/optuna0.json           standard problems
  /tmp/ours_s{1..5}.json, /tmp/optuna_s{1..5}.json                     shift seeds 1..5
"""
import json, math, statistics, subprocess, sys
FUNCS=["branin","hartmann6","rosenbrock","ackley","levy","styblinski","hpo_mixed"]
def lr(x): return math.log10(max(x,1e-12))
def med(runs, f, s):
    v=[lr(r['regret_at']['100']) for r in runs if r['function']==f and r['sampler']==s]
    return statistics.median(v) if v else None
rows=[]
gp0=json.load(open('../shared/bench/tune/optuna_gp_results.json'))['runs']
for label, ours_f, opt_f, extra in [("standard", "/tmp/rust_gp2.json", "/tmp/optuna0.json", ["/tmp/rust_s0.json"])]+[(f"shift {s}", f"/tmp/ours_s{s}.json", f"/tmp/optuna_s{s}.json", []) for s in range(1,6)]:
    ours=json.load(open(ours_f))['runs']
    for e in extra: ours+= [r for r in json.load(open(e))['runs'] if r['sampler']=='tpe']
    opt=json.load(open(opt_f))['runs'] + (gp0 if label=="standard" else [])
    wins=0
    print(f"\n{label}: median log10 regret @100 (ours: 10 seeds; Optuna tpe/random 10 seeds" + ("; Optuna gp 5 seeds from optuna_gp_results.json" if label=="standard" else "; no Optuna gp figures for shifted problems") + ")\n")
    print("| function | autoglm gp | autoglm tpe | best autoglm | Optuna tpe | Optuna random | Optuna gp | best Optuna | autoglm ≤ Optuna |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in FUNCS:
        g=med(ours,f,'gp'); t=med(ours,f,'tpe')
        ot=med(opt,f,'tpe'); orr=med(opt,f,'random'); og=med(opt,f,'gp')
        bo=min(x for x in [g,t] if x is not None); bp=min(x for x in [ot,orr,og] if x is not None)
        ok=bo<=bp; wins+=ok
        fmt=lambda x: "–" if x is None else f"{x:.2f}"
        print(f"| {f} | {fmt(g)} | {fmt(t)} | {fmt(bo)} | {fmt(ot)} | {fmt(orr)} | {fmt(og)} | {fmt(bp)} | {'yes' if ok else 'no'} |")
    print(f"\n{label}: autoglm-tune at least as good on {wins} of 7")
