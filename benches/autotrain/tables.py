#!/usr/bin/env python3
"""Tables of issue 25's gate protocol from the runs search.sh wrote.

    python3 benches/autotrain/tables.py target/autotrain/gate
    python3 benches/autotrain/tables.py --warm target/autotrain/warm
    python3 benches/autotrain/tables.py --workers target/autotrain/workers
    python3 benches/autotrain/tables.py --full target/autotrain/full

For every run METHOD-sSEED: the final scores (run/scores.json: the chosen model on
all of dev with the decoding chosen there, and on test) and the anytime curve — the
search metric on all of dev of the incumbent full-length model (a trial that
completed: "trial N: complete, dev V" in log.txt) against seconds since the search
started (the log's first line, written once the data are ready). Writes gate.md and
gate.json beside the run folders' parent and prints the table (full.md and full.json
for --full, with paired tests of (a)'s test outputs against each other method's:
`autoglm eval bleu|rouge --baseline … --paired-bs`).
"""

import json
import pathlib
import re
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_REFS = ROOT.parent / "shared/data/e2e/derived/refs.jsonl"

METHODS = {
    "a": "(a) multi-fidelity search (hyperband, BOHB TPE)",
    "b": "(b) random search, full length, no pruner",
    "c": "(c) search at the issue's start (auto + median)",
    "d": "(d) default configuration, one run",
    "e": "(e) random sampling, same brackets as (a)",
}
COMPLETE = re.compile(r"^trial (\d+): complete(?: \([^)]*\))?, dev ([-0-9.]+) in")


def run(dir: pathlib.Path) -> dict | None:
    scores = dir / "run" / "scores.json"
    log = dir / "log.txt"
    if not scores.exists() or not log.exists():
        return None
    s = json.loads(scores.read_text())
    lines = [l.split(" ", 1) for l in log.read_text().splitlines() if " " in l]
    t0 = float(lines[0][0])
    curve, best = [], None
    for ts, text in lines:
        m = COMPLETE.match(text)
        if m:
            v = float(m.group(2))
            if best is None or v > best:
                best = v
                curve.append((round(float(ts) - t0, 1), v))
    return {
        "dev": s["dev"],
        "test": s["test"],
        "decoding": s["decoding"],
        "curve": curve,
        "final": best,
        "last_line": lines[-1][1] if lines else "",
    }


def reach(curve, target):
    """Seconds until the incumbent first reaches `target` (None: never)."""
    for t, v in curve:
        if v >= target - 1e-12:
            return t
    return None


def fmt(xs):
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.4g}"
    return f"{statistics.mean(xs):.4g} ± {statistics.stdev(xs):.2g}"


def warm(root: pathlib.Path) -> int:
    """Point 3: for each seed, the cold search's final dev score and when it got
    there, and when the warm-started search first reached it."""
    out = ["| seed | cold final (dev metric) | cold reaches it at | warm reaches it at | warm final |",
           "|---|---|---|---|---|"]
    rows = {}
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"cold-s(\d+)", d.name)
        if not m:
            continue
        s = int(m.group(1))
        cold, hot = run(d), run(root / f"warm-s{s}")
        if not cold or not hot or cold["final"] is None:
            continue
        t_cold = reach(cold["curve"], cold["final"])
        t_warm = reach(hot["curve"], cold["final"])
        rows[s] = {"cold_final": cold["final"], "t_cold": t_cold, "t_warm": t_warm,
                   "warm_final": hot["final"], "cold": cold, "warm": hot}
        out.append(f"| {s} | {cold['final']:.4f} | {t_cold} s | "
                   + (f"{t_warm} s" if t_warm is not None else "never") + f" | {hot['final']} |")
    text = "\n".join(out) + "\n"
    (root.parent / "warm.md").write_text(text)
    (root.parent / "warm.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


def workers(root: pathlib.Path) -> int:
    """search.sh workers: wall seconds of the 4 first rungs (side by side in pairs
    with workers 2) and of the whole search, per size, 1 × 2 threads against 2 × 1."""
    out = ["| structure | 1 trial × 2 threads: first 4 rungs, search (s) | 2 trials × 1 thread: first 4 rungs, search (s) | speed-up of the first 4 rungs | speed-up of the search |",
           "|---|---|---|---|---|"]
    rows = {}
    for size in ["small", "middle", "large"]:
        cells = {}
        for w in [1, 2]:
            log = root / f"{size}-w{w}" / "log.txt"
            if not log.exists():
                continue
            lines = [l.split(" ", 1) for l in log.read_text().splitlines() if " " in l]
            t0 = float(lines[0][0])
            rungs = [float(t) for t, l in lines if re.match(r"trial \d+: rung ", l)]
            total = next((float(m.group(1)) for _, l in lines if (m := re.search(r"failed in ([0-9.]+) s", l))), None)
            if len(rungs) >= 4 and total is not None:
                cells[w] = (rungs[3] - t0, total)
        if len(cells) == 2:
            rows[size] = {"w1": cells[1], "w2": cells[2]}
            out.append(
                f"| {size} | {cells[1][0]:.1f}, {cells[1][1]:.0f} | {cells[2][0]:.1f}, {cells[2][1]:.0f} | "
                f"{cells[1][0] / cells[2][0]:.2f}× | {cells[1][1] / cells[2][1]:.2f}× |"
            )
    text = "\n".join(out)
    (root.parent / "workers.md").write_text(text + "\n")
    (root.parent / "workers.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


def paired(root: pathlib.Path, methods) -> list[str]:
    """Test BLEU and ROUGE-L of (a) against each other method, paired bootstrap
    (1000 resamples, seed 12345) with the release binary."""
    exe = ROOT / "target/release/autoglm"
    out, res = [], {}
    a = root / "a-s1/run/predictions/test.txt"
    for m in methods:
        bl = root / f"{m}-s1/run/predictions/test.txt"
        if m == "a" or not a.exists() or not bl.exists():
            continue
        cells = {}
        for metric, extra, key in [("bleu", [], None), ("rouge", ["--types", "rougeL"], "rougeL")]:
            cmd = [str(exe), "eval", metric, "--hyp", str(a), "--refs-jsonl", str(TEST_REFS),
                   "--baseline", str(bl), "--paired-bs", "--json", *extra]
            v = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if key:
                v = v[key] | {"score": v[key]["fmeasure"]}
            cells[metric] = {"a": v["score"], "baseline": v["paired"]["baseline_score"],
                             "p": v["paired"]["p_value"], "a_mean": v["paired"]["system_mean"],
                             "a_ci": v["paired"]["system_ci"]}
        res[m] = cells
        b, r = cells["bleu"], cells["rouge"]
        out.append(f"- (a) against ({m}): test BLEU {b['a']:.2f} vs {b['baseline']:.2f} "
                   f"(μ {b['a_mean']:.2f} ± {b['a_ci']:.2f}, p = {b['p']:.4f}); test ROUGE-L "
                   f"{r['a']:.4f} vs {r['baseline']:.4f} (μ {r['a_mean']:.4f} ± {r['a_ci']:.4f}, p = {r['p']:.4f})")
    (root.parent / f"{root.name}-paired.json").write_text(json.dumps(res, indent=1))
    return out


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--warm":
        return warm(pathlib.Path(sys.argv[2]))
    if len(sys.argv) > 2 and sys.argv[1] == "--workers":
        return workers(pathlib.Path(sys.argv[2]))
    full = len(sys.argv) > 2 and sys.argv[1] == "--full"
    if full:
        del sys.argv[1]
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/autotrain/gate")
    runs: dict[str, dict[int, dict]] = {m: {} for m in METHODS}
    for d in sorted(root.iterdir()):
        m = re.fullmatch(r"([a-e])-s(\d+)", d.name)
        if m and (r := run(d)):
            runs[m.group(1)][int(m.group(2))] = r
    rows = []
    out = ["| method | seeds | dev BLEU | dev ROUGE-L | test BLEU | test ROUGE-L | search metric (dev, incumbent) |",
           "|---|---|---|---|---|---|---|"]
    for m, name in METHODS.items():
        r = runs[m]
        seeds = sorted(r)
        col = lambda f: [f(r[s]) for s in seeds]
        out.append(
            f"| {name} | {','.join(map(str, seeds)) or '–'} | {fmt(col(lambda x: x['dev']['bleu']))} | "
            f"{fmt(col(lambda x: x['dev']['rouge_l']))} | {fmt(col(lambda x: x['test']['bleu']))} | "
            f"{fmt(col(lambda x: x['test']['rouge_l']))} | {fmt([v for v in col(lambda x: x['final']) if v is not None])} |"
        )
    out.append("")
    out.append("Per seed (dev BLEU / dev ROUGE-L / test BLEU / test ROUGE-L):")
    out.append("")
    for m in METHODS:
        for s, r in sorted(runs[m].items()):
            out.append(
                f"- {m} seed {s}: {r['dev']['bleu']:.2f} / {r['dev']['rouge_l']:.4f} / "
                f"{r['test']['bleu']:.2f} / {r['test']['rouge_l']:.4f}; incumbent curve (s, dev metric) {r['curve']}"
            )
    out.append("")
    out.append("Paired by seed, (a) − method, mean ± sd over the seeds both ran (dev BLEU / dev ROUGE-L / test BLEU / test ROUGE-L):")
    out.append("")
    for m in METHODS:
        if m == "a":
            continue
        seeds = sorted(set(runs["a"]) & set(runs[m]))
        if not seeds:
            continue
        cells = []
        for split, metric in [("dev", "bleu"), ("dev", "rouge_l"), ("test", "bleu"), ("test", "rouge_l")]:
            d = [runs["a"][s][split][metric] - runs[m][s][split][metric] for s in seeds]
            cells.append(f"{statistics.mean(d):+.4g} ± {statistics.stdev(d):.2g}" if len(d) > 1 else f"{d[0]:+.4g}")
        out.append(f"- (a) − ({m}), seeds {','.join(map(str, seeds))}: " + " / ".join(cells))
    b_final = [r["final"] for r in runs["b"].values() if r["final"] is not None]
    t_rand = [r["curve"][-1][0] for r in runs["b"].values() if r["curve"]]
    summary = {}
    if b_final and t_rand:
        target = statistics.mean(b_final)
        t_new = [reach(r["curve"], target) for r in runs["a"].values()]
        T_rand = statistics.median(t_rand)
        # A seed that never reaches the target counts as +∞ in the median.
        T_new = statistics.median([t if t is not None else float("inf") for t in t_new]) if t_new else None
        summary = {"b_mean_final": target, "T_rand": T_rand, "T_new": T_new, "a_reach": t_new}
        out.append("")
        out.append(
            f"T_rand (median time (b)'s incumbent reaches its final value) = {T_rand:.0f} s; "
            f"T_new (median time (a)'s incumbent reaches (b)'s mean final {target:.4f}) = "
            + (f"{T_new:.0f} s" if T_new is not None and T_new != float('inf') else "not reached")
            + f" (per seed: {t_new}); target T_new ≤ 0.6 · T_rand = {0.6 * T_rand:.0f} s"
        )
    if full:
        out += ["", "Paired bootstrap on test, (a) against each method (`autoglm eval … --baseline … --paired-bs`):", ""]
        out += paired(root, METHODS)
    text = "\n".join(out) + "\n"
    (root.parent / f"{root.name}.md").write_text(text)
    (root.parent / f"{root.name}.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
