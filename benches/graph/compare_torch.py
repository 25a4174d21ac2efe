"""Side by side: autoglm-ops against PyTorch on this machine, single thread, f32.

  python benches/graph/compare_torch.py [--rounds 3] [--out FILE]

Needs torch (CPU is enough) and safetensors in the Python environment, and the shared
reference script ../shared/bench/graph/bench_torch.py (its Block, rope tables and timing
loop are used as they are). Each round runs our example binaries and PyTorch's eager
(and, with --compile, torch.compile) one after the other, in alternating order, so both
see the same machine state; each round gives a ratio ours / theirs of the two medians,
and the reported ratio is the median of the rounds' ratios (the machines here drift
between fast and slow phases, which pairing cancels), next to each side's median over
rounds. Prints one JSON object per line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared", "bench", "graph"))
sys.path.insert(0, SHARED)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import bench_torch as bt  # noqa: E402


def cargo_example(name, *args):
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "autoglm-ops", "--example", name, "--", *args, "--json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sgemm(rounds):
    """numpy (OpenBLAS) against our matmul kernel, single thread, alternating; the
    OpenBLAS figure per size is the median over rounds; returns the best of them
    (the 'measured sgemm peak')."""
    rng = np.random.default_rng(0)
    peak = 0.0
    for n in (256, 512, 1024, 2048):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        theirs, ours = [], []
        for _ in range(rounds):
            med, _, _ = bt.bench(lambda: np.matmul(a, b, out=c), budget_s=2.0)
            theirs.append(2.0 * n ** 3 / med / 1e9)
            ours.append(cargo_example("sgemm", "--sizes", str(n))["gflops"])
        t, o = statistics.median(theirs), statistics.median(ours)
        peak = max(peak, t)
        yield {"case": "sgemm", "n": n, "threads": 1, "openblas_gflops": t, "ours_gflops": o,
               "ratio": statistics.median([x / y for x, y in zip(ours, theirs)])}
    yield {"case": "sgemm_peak", "openblas_gflops_1t": peak}


def block_accuracy():
    """Runs our block with --dump and PyTorch's Block on the same weights and inputs."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "block.safetensors")
        cargo_example("glm_block", "--batch", "2", "--runs", "3", "--dump", path)
        t = load_file(path)
    blk = bt.Block().eval()
    with torch.no_grad():
        for name in ("q", "k", "v", "o", "gate", "up", "down"):
            getattr(blk, name).weight.copy_(t[f"{name}.weight"].T)
        blk.ln1.w.copy_(t["ln1.w"])
        blk.ln2.w.copy_(t["ln2.w"])
        ref = blk(t["x"], t["cos"], t["sin"], t["mask"])
    err = (ref - t["out"]).abs().max().item() / ref.abs().max().item()
    return {"case": "block_accuracy", "batch": 2, "max_abs_diff_over_max_abs_ref": err}


def block_interleaved(bsz, blk, x, cos, sin, mask, rounds, peak):
    """Our block and PyTorch eager's in alternating bursts of about 0.1 s each (our
    example in `--serve` mode, one process for the whole comparison), `rounds` × 8
    bursts per side: both sides see the same machine phases. The ratio is the median
    over burst pairs of (our burst median / theirs); the medians and bests of all
    runs are given too."""
    info = cargo_example("glm_block", "--batch", str(bsz), "--threads", "1", "--runs", "10")
    proc = subprocess.Popen(
        [os.path.join(ROOT, "target", "release", "examples", "glm_block"), "--batch", str(bsz),
         "--threads", "1", "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert json.loads(proc.stdout.readline())["ready"]
    per = max(1, int(100.0 / (7.0 * bsz)))

    def mine():
        proc.stdin.write(f"{per}\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())["ms"]

    def theirs():
        ts = []
        for _ in range(per):
            t0 = time.perf_counter()
            blk(x, cos, sin, mask)
            ts.append((time.perf_counter() - t0) * 1e3)
        return ts

    for _ in range(3):
        mine(), theirs()
    ours, eager, ratios = [], [], []
    for k in range(rounds * 8):
        if k % 2:
            e, o = theirs(), mine()
        else:
            o, e = mine(), theirs()
        ours += o
        eager += e
        ratios.append(statistics.median(o) / statistics.median(e))
    proc.stdin.close()
    proc.wait()
    med = statistics.median
    om, em = med(ours), med(eager)
    gflop = bt.block_flops(bsz, bt.SEQ) / 1e9
    return {"case": "block", "batch": bsz, "threads": 1, "bursts": len(ratios), "runs_per_burst": per,
            "ours_ms": om, "torch_eager_ms": em, "ratio_vs_eager": med(ratios),
            "ratio_quartiles": statistics.quantiles(ratios, n=4),
            "ratio_of_medians": om / em, "ours_best_ms": min(ours), "torch_eager_best_ms": min(eager),
            "ratio_of_bests": min(ours) / min(eager), "gflop": gflop,
            "ours_frac_of_sgemm_peak": gflop / om * 1e3 / peak if peak else None,
            "torch_frac_of_sgemm_peak": gflop / em * 1e3 / peak if peak else None,
            "fused_nodes": info["fused_nodes"], "peak_bytes": info["peak_bytes"],
            "naive_bytes": info["naive_bytes"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (Inductor)")
    ap.add_argument("--out", default="")
    ap.add_argument("--cases", default="sgemm,ln_gelu,block",
                    help="comma-separated subset of sgemm,ln_gelu,block")
    ap.add_argument("--budget", type=float, default=2.0,
                    help="seconds each side is timed per round (shorter rounds pair better)")
    a = ap.parse_args()
    cases = set(a.cases.split(","))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []

    def emit(r):
        rows.append(r)
        print(json.dumps(r), flush=True)

    emit({"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()})
    peak = None
    if "sgemm" in cases:
        for r in sgemm(a.rounds):
            emit(r)
        peak = rows[-1]["openblas_gflops_1t"]
    emit(block_accuracy())
    with torch.inference_mode():
        for n, h in [(2048, 512), (8192, 1024)] if "ln_gelu" in cases else []:
            x = torch.randn(n, h)
            w, b = torch.randn(h), torch.randn(h)

            def f(x, w, b):
                return F.gelu(F.layer_norm(x, (h,), w, b))

            cf = torch.compile(f, dynamic=False) if a.compile else None
            if cf:
                cf(x, w, b)
            ours, ours_fresh, eager, inductor = [], [], [], []
            for k in range(a.rounds):
                def mine():
                    r = cargo_example("lngelu", "--rows", str(n), "--cols", str(h), "--threads", "1", "--recycle")
                    ours.append(r["fused_ms"])
                    ours_fresh.append(cargo_example("lngelu", "--rows", str(n), "--cols", str(h), "--threads", "1")["fused_ms"])
                    return r["max_abs_err"]

                def theirs():
                    eager.append(bt.bench(lambda: f(x, w, b), budget_s=2.0)[0] * 1e3)
                    if cf:
                        inductor.append(bt.bench(lambda: cf(x, w, b), budget_s=2.0)[0] * 1e3)
                if k % 2:
                    theirs()
                    err = mine()
                else:
                    err = mine()
                    theirs()
            med = statistics.median
            r = {"case": "ln_gelu", "shape": [n, h], "threads": 1, "rounds": a.rounds,
                 "ours_fused_ms": med(ours), "ours_fused_fresh_output_ms": med(ours_fresh),
                 "torch_eager_ms": med(eager), "max_abs_err": err,
                 "ratio_vs_eager": med([o / e for o, e in zip(ours, eager)]),
                 "ratio_fresh_vs_eager": med([o / e for o, e in zip(ours_fresh, eager)])}
            if cf:
                r["torch_compile_ms"] = med(inductor)
                r["ratio_vs_compile"] = med([o / e for o, e in zip(ours, inductor)])
            emit(r)
        cos, sin = bt.rope_tables(torch.float32)
        mask = torch.full((bt.SEQ, bt.SEQ), float("-inf")).triu(1)
        blk = bt.Block().eval()
        for bsz in (1, 8) if "block" in cases else ():
            x = torch.randn(bsz, bt.SEQ, bt.HIDDEN)
            emit(block_interleaved(bsz, blk, x, cos, sin, mask, a.rounds, peak))
    if a.out:
        with open(a.out, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
