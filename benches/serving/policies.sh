#!/usr/bin/env bash
# Goodput of the batching policies side by side: for each policy, start `autoglm serve`
# on MODEL_DIR with that policy, drive open-loop Poisson arrivals at rising rates with
# `autoglm bench-serve` (the same seeded arrivals for every policy), and record the
# requests finishing within the latency target. Development machine (not CI).
#
# usage: benches/serving/policies.sh MODEL_DIR OUT.jsonl
# env: TARGET_MS (2000), RATES ("2,4,8,12,16,20,24"), MAX_S (30), MAX_REQ (200),
#      THREADS (1), GEN (64), POLICIES (space-separated short forms), AUTOGLM, PORT.
set -eu
MODEL=$1; OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
AUTOGLM=${AUTOGLM:-$ROOT/target/release/autoglm}
PORT=${PORT:-18081}
TARGET_MS=${TARGET_MS:-2000}
POLICIES=${POLICIES:-"feedback:$TARGET_MS rate-table static:8:100 continuous:16 continuous:32"}
for policy in $POLICIES; do
  work=$(mktemp -d)
  cp -r "$MODEL" "$work/m"
  "$AUTOGLM" serve --model "$work/m" --port "$PORT" --threads "${THREADS:-1}" --policy "$policy" \
    --response-cache-mib 0 > "$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done
  echo "policy $policy; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
  "$AUTOGLM" bench-serve --url "http://127.0.0.1:$PORT" --mode poisson --rates "${RATES:-2,4,8,12,16,20,24}" \
    --max-s "${MAX_S:-30}" --max-req "${MAX_REQ:-200}" --drain-s 60 --gen-tokens "${GEN:-64}" \
    --latency-target-ms "$TARGET_MS" --label "$policy" --out "$OUT" \
    | python3 -c 'import json, sys
for l in sys.stdin:
    r = json.loads(l)
    print("  rate %s: sent %s done %s err %s good %s goodput %s req/s, p99 %s s" % (r["offered_rps"], r["sent"], r["completed"], r["errors"], r["good"], r["goodput_rps"], r["e2e_p99_s"]))'
  kill -INT $pid; wait $pid 2>/dev/null || true
  rm -rf "$work"
done
python3 "$HERE/policy_table.py" "$OUT"
