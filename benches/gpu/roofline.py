"""The roofline of the GPU check, measured with PyTorch on the same card, and the table.

Measures device-to-device copy bandwidth (`y.copy_(x)`, one read and one write) at
[8192, 4096] in f32 and f16 and cuBLAS matmul (`a @ b`) at 4096^3 in bf16, f16 and f32
(median of 20 timed runs after warm-up, CUDA events), then reads `gpu_check`'s JSON
and writes a Markdown table with the issue's targets:

* fused LayerNorm+GELU at [8192, 4096] >= 70 % of the copy bandwidth (f32 and f16);
* matmul at 4096^3 in bf16 >= 50 % of PyTorch's.

Usage: python3 roofline.py --ours ours.json [--json torch.json] [--table table.md]
"""
import argparse
import json
import statistics

import torch


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def measure():
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "copy": {}, "matmul": {}}
    for name, dt in (("f32", torch.float32), ("f16", torch.float16)):
        x = torch.randn(8192, 4096, device=dev, dtype=dt)
        y = torch.empty_like(x)
        s = timed(lambda: y.copy_(x))
        out["copy"][name] = {"ms": s * 1e3, "gb_per_s": 2 * x.numel() * x.element_size() / s / 1e9}
    for name, dt in (("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)):
        n = 4096
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        s = timed(lambda: a @ b)
        out["matmul"][name] = {"ms": s * 1e3, "tflop_per_s": 2 * n**3 / s / 1e12}
    return out


def table(ours, torch_figs):
    rows = ["| kernel | shape | type | ours | PyTorch / roofline | ratio | target | met |", "|---|---|---|---|---|---|---|---|"]
    for t in ours["timings"]:
        if t["kernel"] == "fused_layernorm_gelu":
            ref = torch_figs["copy"].get(t["dtype"])
            if ref:
                r = t["gb_per_s"] / ref["gb_per_s"]
                rows.append(f"| fused LayerNorm+GELU | {t['shape']} | {t['dtype']} | {t['gb_per_s']:.0f} GB/s ({t['ms']:.3f} ms) "
                            f"| copy {ref['gb_per_s']:.0f} GB/s | {r:.2f} | ≥ 0.70 | {'yes' if r >= 0.7 else 'no'} |")
        elif t["kernel"] == "copy":
            ref = torch_figs["copy"].get(t["dtype"])
            if ref:
                rows.append(f"| our copy | {t['shape']} | {t['dtype']} | {t['gb_per_s']:.0f} GB/s | copy {ref['gb_per_s']:.0f} GB/s "
                            f"| {t['gb_per_s'] / ref['gb_per_s']:.2f} | | |")
        elif t["kernel"] == "matmul":
            ref = torch_figs["matmul"].get(t["dtype"])
            if ref:
                r = t["tflop_per_s"] / ref["tflop_per_s"]
                target = "≥ 0.50" if t["dtype"] == "bf16" else ""
                met = ("yes" if r >= 0.5 else "no") if t["dtype"] == "bf16" else ""
                rows.append(f"| matmul | {t['shape']} | {t['dtype']} | {t['tflop_per_s']:.1f} TFLOP/s ({t['ms']:.2f} ms) "
                            f"| cuBLAS {ref['tflop_per_s']:.1f} TFLOP/s | {r:.2f} | {target} | {met} |")
    conf = ", ".join(f"{k}: {'pass' if isinstance(v, dict) and v.get('pass') else v if isinstance(v, str) else 'FAIL'}"
                     for k, v in sorted(ours["conformance"].items()))
    return f"Card: {torch_figs['device']} (PyTorch {torch_figs['torch']}); runtime {ours['runtime']}.\n\nConformance: {conf}.\n\n" + "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--json")
    ap.add_argument("--table")
    a = ap.parse_args()
    figs = measure()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figs, f, indent=1)
    with open(a.ours) as f:
        ours = json.load(f)
    text = table(ours, figs)
    print(text)
    if a.table:
        with open(a.table, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
