"""The quickstart's search in one process and in two processes sharing one study
(issue 28, point 3): search wall time and best dev score, interleaved by seed.

usage: python benches/tune/shared_quickstart.py --autoglm target/release/autoglm \
           [--seeds 0 1 2] [--out benches/tune/shared-quickstart-DATE.json]
       python benches/tune/shared_quickstart.py --table FILE.json

Configurations, each from the same task (examples/quickstart.yaml with its data
paths made absolute, `search.seed` set):
- `1p1t`: one process, `search.threads: 1`;
- `1p2t`: one process, `search.threads: 2`;
- `2p1t`: two processes at once, one thread each, on one Optuna journal file
  (`--storage`) with an artifact store.
The search wall time of a run is the largest `search: … in X s` of its processes
(each process's search seconds include waiting for the other's trials); the
best dev score is the study's (`best trial N (dev V)`). A process is stopped
once it printed its search line: what follows (test scoring, export) is the
same for every configuration.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEARCH = re.compile(r"^search: (\d+) complete, (\d+) pruned, (\d+) failed in (\d+) s; best (?:trial (\d+) \(dev ([0-9.]+)\)|none)")


FIXED = None  # (journal, trials): the same configurations in every run


def task_text(seed, threads, extra=""):
    src = open(os.path.join(ROOT, "examples", "quickstart.yaml")).read()
    data = os.path.join(ROOT, "examples", "data")
    src = src.replace("data/quickstart/", data + "/quickstart/")
    if FIXED:
        journal, n = FIXED
        src = src.replace("  pruner: median\n", "  pruner: none\n", 1)
        src = re.sub(r"  trials: \d+\n", f"  trials: {n}\n", src, count=1)
        extra += f"  warm_start: [{journal}]\n  warm_start_trials: {n}\n"
    src = src.replace("search:\n", f"search:\n  seed: {seed}\n  threads: {threads}\n{extra}", 1)
    return src


def start(bin_, task, out, *extra):
    return subprocess.Popen([bin_, "run", task, "--output", out, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


TRIAL = re.compile(r"^trial \d+: (?:complete|pruned|failed).* in (\d+) s$")


def search_line(p, log):
    """Reads the process's output up to its search line, then stops it."""
    busy = 0
    for line in iter(p.stdout.readline, ""):
        log.write(line)
        t = TRIAL.match(line.rstrip("\n"))
        if t:
            busy += int(t.group(1))
        m = SEARCH.match(line)
        if m:
            p.kill()
            p.wait()
            return {
                "complete": int(m.group(1)), "pruned": int(m.group(2)), "failed": int(m.group(3)),
                "seconds": int(m.group(4)), "trial_seconds": busy,
                "best_trial": None if m.group(5) is None else int(m.group(5)),
                "best_dev": None if m.group(6) is None else float(m.group(6)),
            }
    p.wait()
    sys.exit(f"a process ended without its search line (exit {p.returncode}); see its log")


def one(bin_, config, seed, logdir):
    d = tempfile.mkdtemp(prefix=f"sq-{config}-{seed}-")
    task = os.path.join(d, "task.yaml")
    log = open(os.path.join(logdir, f"{config}-{seed}.log"), "w")
    t0 = time.time()
    if config == "2p1t":
        extra = (f"  storage: {d}/study.log\n  artifacts: {d}/artifacts\n"
                 "  heartbeat: {interval: 2, grace: 20}\n")
        open(task, "w").write(task_text(seed, 1, extra))
        ps = []
        for i in range(2):
            ps.append(start(bin_, task, os.path.join(d, f"w{i}")))
            if FIXED and i == 0:
                # The first process enqueues the configurations; the second joins
                # after, so that it samples none of its own.
                time.sleep(3)
        lines = [search_line(p, log) for p in ps]
    else:
        open(task, "w").write(task_text(seed, 1 if config == "1p1t" else 2))
        lines = [search_line(start(bin_, task, os.path.join(d, "w0")), log)]
    wall = time.time() - t0
    best = max(lines, key=lambda l: l["best_dev"] or 0.0)
    return {
        "config": config, "seed": seed,
        "search_seconds": max(l["seconds"] for l in lines),
        "process_seconds": [l["seconds"] for l in lines],
        # Seconds of training trials, all processes: the work done.
        "trial_seconds": sum(l["trial_seconds"] for l in lines),
        "wall_seconds_to_search_line": round(wall, 1),
        "trials": best["complete"] + best["pruned"], "failed": best["failed"],
        "best_trial": best["best_trial"], "best_dev": best["best_dev"],
    }


def table(rows):
    by = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    base = {r["seed"]: r["search_seconds"] for r in by.get("1p1t", [])}
    two = {r["seed"]: r["search_seconds"] for r in by.get("1p2t", [])}
    print("| configuration | search s (per seed) | median | ratio to 1p1t (per seed) | ratio to 1p2t (per seed) | trial s, all processes (per seed) | best dev (per seed) |")
    print("|---|---|---|---|---|---|---|")
    for c in ["1p1t", "1p2t", "2p1t"]:
        rs = sorted(by.get(c, []), key=lambda r: r["seed"])
        if not rs:
            continue
        secs = [r["search_seconds"] for r in rs]
        r1 = [r["search_seconds"] / base[r["seed"]] for r in rs if r["seed"] in base]
        r2 = [r["search_seconds"] / two[r["seed"]] for r in rs if r["seed"] in two]
        print(f"| {c} | {', '.join(map(str, secs))} | {statistics.median(secs)} | "
              f"{', '.join(f'{x:.2f}' for x in r1)} | {', '.join(f'{x:.2f}' for x in r2)} | "
              f"{', '.join(str(r.get('trial_seconds', '?')) for r in rs)} | "
              f"{', '.join(str(r['best_dev']) for r in rs)} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--autoglm")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=["1p1t", "1p2t", "2p1t"])
    ap.add_argument("--out")
    ap.add_argument("--logs", default="target/shared-quickstart-logs")
    ap.add_argument("--table")
    ap.add_argument("--fixed", nargs=2, metavar=("JOURNAL", "N"),
                    help="every run trains the N best configurations of JOURNAL (an earlier run's "
                         "study.jsonl), enqueued, with no pruner: the same work in every configuration")
    a = ap.parse_args()
    global FIXED
    if a.fixed:
        FIXED = (os.path.abspath(a.fixed[0]), int(a.fixed[1]))
    if a.table:
        table(json.load(open(a.table))["runs"])
        return
    os.makedirs(a.logs, exist_ok=True)
    rows = []
    for i, seed in enumerate(a.seeds):
        # Interleaved: the configurations' order turns with the seed.
        k = i % len(a.configs)
        for c in a.configs[k:] + a.configs[:k]:
            r = one(a.autoglm, c, seed, a.logs)
            print(json.dumps(r), flush=True)
            rows.append(r)
    doc = {"date": time.strftime("%Y-%m-%d"), "fixed": a.fixed, "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t"),
           "cores": os.cpu_count(), "runs": rows}
    if a.out:
        json.dump(doc, open(a.out, "w"), indent=1)
    table(rows)


if __name__ == "__main__":
    main()
