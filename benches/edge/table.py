"""Summarises benches/edge/edge.sh's JSON lines: medians and ranges per program and
thread count (decode tokens/s, prompt time, VmHWM, peak heap)."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sizes = rows[0]
print(f"binary {sizes['binary_bytes'] / 2**20:.2f} MiB, stripped {sizes['stripped_bytes'] / 2**20:.2f} MiB; "
      f"model file {sizes['model_bytes'] / 2**20:.2f} MiB")
runs = rows[1:]
print("| program | threads | runs | decode tokens/s, median [min, max] | VmHWM MiB, median [min, max] | peak heap MiB |")
print("|---|---|---|---|---|---|")
for who in ["edge", "server"]:
    for t in sorted({r["threads"] for r in runs}):
        rs = [r for r in runs if r["who"] == who and r["threads"] == t]
        if not rs:
            continue
        tps = [r["decode_tokens_per_s"] for r in rs]
        hwm = [r["vm_hwm"] / 2**20 for r in rs]
        heap = [r.get("heap_peak", 0) / 2**20 for r in rs]
        assert all(r["generated_tokens"] == 128 for r in rs), rs
        print(f"| {who} | {t} | {len(rs)} | {statistics.median(tps):.0f} [{min(tps):.0f}, {max(tps):.0f}] "
              f"| {statistics.median(hwm):.2f} [{min(hwm):.2f}, {max(hwm):.2f}] "
              f"| {statistics.median(heap):.2f} |" if who == "edge" else
              f"| {who} | {t} | {len(rs)} | {statistics.median(tps):.0f} [{min(tps):.0f}, {max(tps):.0f}] "
              f"| {statistics.median(hwm):.2f} [{min(hwm):.2f}, {max(hwm):.2f}] | – |")

# Decode speed of the edge runtime over the server's, paired by round and threads.
pairs = {}
for i, r in enumerate(runs):
    pairs.setdefault((i // (2 * len({x["threads"] for x in runs})), r["threads"]), {})[r["who"]] = r
for t in sorted({r["threads"] for r in runs}):
    ratios = sorted(p["edge"]["decode_tokens_per_s"] / p["server"]["decode_tokens_per_s"]
                    for (rnd, th), p in pairs.items() if th == t and len(p) == 2)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    print(f"threads {t}: edge/server decode tokens/s, median {statistics.median(ratios):.2f} "
          f"(quartiles {q[0]:.2f}–{q[2]:.2f}, {len(ratios)} pairs)")
