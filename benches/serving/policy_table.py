"""Goodput table of benches/serving/policies.sh results: rows = offered rate, columns = policy.

usage: python3 benches/serving/policy_table.py OUT.jsonl
Each cell: requests finishing within the target / sent (goodput in req/s); errors are
requests refused (503, shed by the feedback policy) or failed.
"""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
policies = list(dict.fromkeys(r["label"].rsplit(" ", 1)[0] for r in rows))
rates = sorted({r["offered_rps"] for r in rows})
cell = {(r["label"].rsplit(" ", 1)[0], r["offered_rps"]): r for r in rows}
print("| offered req/s | " + " | ".join(policies) + " |")
print("|---|" + "---|" * len(policies))
for rate in rates:
    out = []
    for p in policies:
        r = cell.get((p, rate))
        if r is None:
            out.append("—")
            continue
        err = f", {r['errors']} refused" if r["errors"] else ""
        out.append(f"{r['good']}/{r['sent']} ({r['goodput_rps']}/s{err}, p99 {r['e2e_p99_s']} s)")
    print(f"| {rate} | " + " | ".join(out) + " |")
