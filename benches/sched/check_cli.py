"""Every schedule `autoglm schedule` writes (HEFT, CPOP, HEFT with duplication, the GCN
with and without duplication, all on the fastest worker, auto) passes the shared
validator, HEFT/CPOP makespans equal the shared Python baselines (results.json) within
1e-9 relative, and auto's makespan is never above the best of HEFT, CPOP and fastest.

  python3 benches/sched/check_cli.py --autoglm target/release/autoglm [--shared ../shared]

Runs the CLI on every shared DAG × platform × algorithm, validates each schedule with
shared/bench/sched/schedlib.py (the code behind validate_schedule.py) and prints one
summary line; exits 1 on any failure. Also reports the slowest CLI run (whole process).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--autoglm", required=True)
ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.shared, "bench", "sched"))
from schedlib import Dag, Platform, load_json, validate  # noqa: E402

rows = load_json(os.path.join(a.shared, "bench", "sched", "results.json"))["rows"]
base = {(r["dag"], r["platform"], r["scheduler"]): r["makespan"] for r in rows}
plats = sorted(glob.glob(os.path.join(a.shared, "data", "dags", "platforms", "*.json")))
dags = sorted(glob.glob(os.path.join(a.shared, "data", "dags", "wfcommons", "*.json"))) + \
    sorted(glob.glob(os.path.join(a.shared, "data", "dags", "random", "*.json")))
failures, n, worst, slowest = [], 0, 0.0, (0.0, "")
with tempfile.TemporaryDirectory() as tmp:
    for df in dags:
        dag = Dag(load_json(df))
        for pf in plats:
            plat = Platform(load_json(pf))
            got = {}
            for algo, name in (("heft", "HEFT"), ("cpop", "CPOP"), ("heft-dup", None), ("gcn", None),
                               ("gcn-nodup", None), ("fastest", None), ("auto", None)):
                out = os.path.join(tmp, "s.json")
                t0 = time.perf_counter()
                subprocess.run([a.autoglm, "schedule", "--dag", df, "--platform", pf, "--algo", algo, "--out", out],
                               check=True, capture_output=True)
                dt = time.perf_counter() - t0
                if dt > slowest[0]:
                    slowest = (dt, f"{dag.name} ({dag.n} tasks) on {plat.name} by {algo}")
                errs, m = validate(dag, plat, load_json(out))
                got[algo] = m["makespan"]
                n += 1
                if algo == "auto" and m["makespan"] > min(got["heft"], got["cpop"], got["fastest"]) * (1 + 1e-12):
                    failures.append(f"{dag.name} {plat.name} auto {m['makespan']} above the best classic")
                if name is None:  # no Python anchor: validity only
                    if errs:
                        failures.append(f"{dag.name} {plat.name} {algo}: {errs[:2]}")
                    continue
                want = base[(dag.name, plat.name, name)]
                rel = abs(m["makespan"] - want) / want
                worst = max(worst, rel)
                if errs or rel > 1e-9:
                    failures.append(f"{dag.name} {plat.name} {name}: {errs[:2]} makespan {m['makespan']} vs {want}")
print(json.dumps({"schedules": n, "invalid_or_different": len(failures), "worst_rel_makespan_diff": worst,
                  "slowest_cli_run_s": round(slowest[0], 4), "slowest": slowest[1]}))
for f in failures[:10]:
    print("FAIL", f)
sys.exit(1 if failures else 0)
