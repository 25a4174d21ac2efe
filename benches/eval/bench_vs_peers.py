#!/usr/bin/env python3
"""Side-by-side speed of autoglm-eval against its peers, whole-process wall time,
single thread, median of N runs (default 5), sides interleaved run by run:

  bleu-chrf: BLEU (13a) + chrF on all 21 E2E systems  vs sacrebleu's Python API
  bleu-chrf-wmt: BLEU (13a) + chrF on the 9 WMT22 en-de systems concatenated into one
             file (18,333 long lines) against ref.A and ref.B repeated alike
                                                       vs sacrebleu's Python API
  ter:       TER on the 4 systems the reference files cover (E2E tgen, slug;
             WMT22 en-de Online-B, OpenNMT)           vs sacrebleu's Python API
  rouge:     ROUGE-1/2/L/Lsum, Porter stemmer, score_multi (max over references),
             all 21 E2E systems                        vs the Rust crate rougers 0.2.1,
             driven by a release-built program (benches/peers/rougers-driver)

Both sides must print the same scores (checked to 1e-9), so they do the same work.
Usage: python3 benches/eval/bench_vs_peers.py [--runs 5] [--only bleu-chrf,bleu-chrf-wmt,ter,rouge]
       [--python PY]
Writes benches/eval/results.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT.parent / "shared" / "data"
E2E = SHARED / "e2e" / "derived"
DE = SHARED / "wmt22" / "en-de"
DE_SYSTEMS = ("JDExploreAcademy", "Lan-Bridge", "Online-A", "Online-B", "Online-G", "Online-W", "Online-Y",
              "OpenNMT", "PROMT")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd):
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t = time.perf_counter()
    p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, [json.loads(l) for l in p.stdout.splitlines()]


def same(a, b):
    assert len(a) == len(b), (len(a), len(b))
    for x, y in zip(a, b):
        for k, v in x.items():
            if k != "system":
                assert abs(v - y[k]) <= 1e-9, (x, y)


def concat_wmt(out_dir):
    """All WMT22 en-de systems in one hypothesis file, each reference repeated alongside."""
    n = 0
    with open(out_dir / "hyp.de", "w", encoding="utf-8") as h, \
            open(out_dir / "ref.A.de", "w", encoding="utf-8") as ra, \
            open(out_dir / "ref.B.de", "w", encoding="utf-8") as rb:
        for s in DE_SYSTEMS:
            hyp = (DE / f"generaltest2022.en-de.hyp.{s}.de").read_text(encoding="utf-8")
            a = (DE / "generaltest2022.en-de.ref.A.de").read_text(encoding="utf-8")
            b = (DE / "generaltest2022.en-de.ref.B.de").read_text(encoding="utf-8")
            assert hyp.count("\n") == a.count("\n") == b.count("\n") and hyp.endswith("\n"), s
            n += hyp.count("\n")
            h.write(hyp)
            ra.write(a)
            rb.write(b)
    assert n == 18333, n
    return [str(out_dir / "ref.A.de"), "--plain", str(out_dir / "ref.B.de")], [str(out_dir / "hyp.de")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="bleu-chrf,bleu-chrf-wmt,ter,rouge")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "-q", "-p", "autoglm-benches"], cwd=ROOT)
    ours = str(ROOT / "target" / "release" / "eval-all")
    e2e_hyps = sorted(str(p) for p in (E2E / "hyp").glob("*.txt"))
    e2e_refs = [str(E2E / "refs.jsonl"), "--jsonl"]
    de_refs = [str(DE / "generaltest2022.en-de.ref.A.de"), "--plain", str(DE / "generaltest2022.en-de.ref.B.de")]
    de_hyps = [str(DE / f"generaltest2022.en-de.hyp.{s}.de") for s in ("Online-B", "OpenNMT")]
    e2e_ter = [str(E2E / "hyp" / f"{s}.txt") for s in ("tgen", "slug")]
    peer_py = [a.python, str(HERE / "peer_sacrebleu.py")]
    work = {
        "bleu-chrf": ("sacrebleu 2.6.0 (Python API, reference cache)",
                      [[ours, "bleu-chrf", *e2e_refs, *e2e_hyps]],
                      [[*peer_py, "bleu-chrf", *e2e_refs, *e2e_hyps]]),
        "ter": ("sacrebleu 2.6.0 (Python API, reference cache)",
                [[ours, "ter", *e2e_refs, *e2e_ter], [ours, "ter", *de_refs, *de_hyps]],
                [[*peer_py, "ter", *e2e_refs, *e2e_ter], [*peer_py, "ter", *de_refs, *de_hyps]]),
    }
    if "bleu-chrf-wmt" in a.only.split(","):
        tmp = tempfile.TemporaryDirectory(prefix="bench-eval-wmt-")
        wmt_refs, wmt_hyp = concat_wmt(Path(tmp.name))
        work["bleu-chrf-wmt"] = ("sacrebleu 2.6.0 (Python API, reference cache)",
                                 [[ours, "bleu-chrf", *wmt_refs, *wmt_hyp]],
                                 [[*peer_py, "bleu-chrf", *wmt_refs, *wmt_hyp]])
    if "rouge" in a.only:
        drv = HERE.parent / "peers" / "rougers-driver"
        sh(["cargo", "build", "--release", "-q"], cwd=drv)
        work["rouge"] = ("rougers 0.2.1 (Rust, release, target documents tokenized once per line)",
                         [[ours, "rouge", *e2e_refs, *e2e_hyps]],
                         [[str(drv / "target" / "release" / "rougers-driver"), str(E2E / "refs.jsonl"), *e2e_hyps]])
    results = {}
    for name in a.only.split(","):
        peer, ours_cmds, peer_cmds = work[name]
        t_ours, t_peer = [], []
        for r in range(a.runs):
            w_o, w_p, out_o, out_p = 0.0, 0.0, [], []
            for co, cp in zip(ours_cmds, peer_cmds):
                t, o = timed(co)
                w_o += t
                out_o += o
                t, p = timed(cp)
                w_p += t
                out_p += p
            same(out_o, out_p)
            t_ours.append(w_o)
            t_peer.append(w_p)
            print(f"{name} run {r + 1}: autoglm-eval {w_o:.3f}s, peer {w_p:.3f}s", flush=True)
        mo, mp = statistics.median(t_ours), statistics.median(t_peer)
        results[name] = dict(date=time.strftime("%Y-%m-%d"), peer=peer, autoglm_eval_median_s=mo, peer_median_s=mp, speedup=mp / mo,
                             autoglm_eval_runs_s=t_ours, peer_runs_s=t_peer)
        print(f"== {name}: autoglm-eval {mo:.3f}s vs {peer} {mp:.3f}s -> {mp / mo:.1f}x", flush=True)
    out = HERE / "results.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update(results)
    old["_meta"] = dict(last_run=time.strftime("%Y-%m-%d"), machine=f"{os.cpu_count()} vCPU", python=a.python, runs=a.runs)
    out.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
