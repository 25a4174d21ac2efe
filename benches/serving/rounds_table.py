"""Interleaved rounds of benches/serving/side_by_side.sh (ROUNDS=N) as ratios.

usage: python rounds_table.py OUT.jsonl

For each weight type and thread count, per round: ours / llama.cpp for saturated
generation tokens/s (closed loop, 16 clients; higher is better) and llama.cpp / ours
for e2e p99 and TTFT p99 at 2 req/s (so above 1 means ours is better), the median
over rounds with quartiles; a ratio whose quartiles hold 1 is reported as a tie. Load
times (OUT.jsonl.load.jsonl: launch to the first healthy /health) likewise.
"""
import collections
import json
import re
import statistics
import sys

path = sys.argv[1]
rows = [json.loads(l) for l in open(path) if l.strip()]
seen = collections.Counter()
by = collections.defaultdict(dict)  # (who, dtype, threads, mode) -> {round: row}
for r in rows:
    m = re.match(r"(llama\.cpp|autoglm)_(\w+?)_t(\d+)", r["label"])
    key = (m.group(1), m.group(2), int(m.group(3)), r["mode"])
    by[key][seen[key]] = r
    seen[key] += 1
loads = collections.defaultdict(list)
try:
    for l in open(path + ".load.jsonl"):
        r = json.loads(l)
        m = re.match(r"(llama\.cpp|autoglm)_(\w+?)_t(\d+)", r["label"])
        loads[(m.group(1), m.group(2), int(m.group(3)))].append(r["load_s"])
except FileNotFoundError:
    pass


def summary(ratios):
    ratios = sorted(ratios)
    if not ratios:
        return "-"
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    tie = ": tie" if q[0] <= 1 <= q[2] else ""
    return f"{statistics.median(ratios):.2f} [{q[0]:.2f}, {q[2]:.2f}]{tie} (n={len(ratios)})"


def ratios(dtype, t, mode, field, ours_over_theirs):
    a, b = by[("llama.cpp", dtype, t, mode)], by[("autoglm", dtype, t, mode)]
    out = []
    for k in sorted(set(a) & set(b)):
        x, y = a[k][field], b[k][field]
        if x and y:
            out.append(y / x if ours_over_theirs else x / y)
    return out


def med(who, dtype, t, mode, field):
    v = [r[field] for r in by[(who, dtype, t, mode)].values() if r[field] is not None]
    digits = 1 if field.endswith("per_s") else 3
    return f"{statistics.median(v):.{digits}f}" if v else "-"


print("| weights | threads | gen tok/s llama.cpp / ours (medians) | gen tok/s ours / llama.cpp | "
      "2 req/s e2e p99 s llama.cpp / ours | e2e p99 llama.cpp / ours | TTFT p99 llama.cpp / ours | "
      "load s llama.cpp / ours (medians) | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for dtype, t in sorted({(k[1], k[2]) for k in by}):
    errors = sum(r["errors"] for k, v in by.items() if k[1:3] == (dtype, t) for r in v.values())
    la, lo = loads[("llama.cpp", dtype, t)], loads[("autoglm", dtype, t)]
    load = f"{statistics.median(la):.2f} / {statistics.median(lo):.2f}" if la and lo else "-"
    print(f"| {dtype} | {t} | {med('llama.cpp', dtype, t, 'closed', 'gen_tok_per_s')} / "
          f"{med('autoglm', dtype, t, 'closed', 'gen_tok_per_s')} | "
          f"{summary(ratios(dtype, t, 'closed', 'gen_tok_per_s', True))} | "
          f"{med('llama.cpp', dtype, t, 'poisson', 'e2e_p99_s')} / {med('autoglm', dtype, t, 'poisson', 'e2e_p99_s')} | "
          f"{summary(ratios(dtype, t, 'poisson', 'e2e_p99_s', False))} | "
          f"{summary(ratios(dtype, t, 'poisson', 'ttft_p99_s', False))} | {load} | {errors} |")
