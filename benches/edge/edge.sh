#!/usr/bin/env bash
# The edge runtime on the serving benchmark's model shape, all q4_0, beside the full
# server on the same files (issue 27, point 3).
#
#   benches/edge/edge.sh OUT.jsonl [ROUNDS] [THREADS...]
#
# Builds the release binaries and the model (`serving_model` example: random weights,
# the recipe's tokenizer, a 384-token prompt), then per round and thread count runs
# `autoglm-edge --memory-budget 32` for 128 new tokens at context 512 and one
# non-streamed `/completion` of the same prompt on `autoglm serve`, alternating
# which goes first. One JSON line per run: the edge's report (need, timings, peak
# heap, VmHWM, phases), or the server's timings and its process's VmHWM.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: edge.sh OUT.jsonl [ROUNDS] [THREADS...]}
rounds=${2:-5}
shift $(( $# >= 2 ? 2 : 1 ))
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(1 2)
data=../shared/data/e2e
model=target/edge/serving-q4
cargo build --release --locked -p autoglm-edge --bins --example serving_model -p autoglm-cli
[ -f $model/model.safetensors ] || target/release/examples/serving_model $model $data/train.jsonl $data/dev.jsonl q4_0 q4_0 384
prompt=$(cat $model/prompt.txt)
: > "$out"
strip -o target/edge/autoglm-edge.stripped target/release/autoglm-edge
echo "{\"binary_bytes\": $(stat -c %s target/release/autoglm-edge), \"stripped_bytes\": $(stat -c %s target/edge/autoglm-edge.stripped), \"model_bytes\": $(stat -c %s $model/model.safetensors)}" >> "$out"

edge() {  # threads
  local r
  r=$(target/edge/autoglm-edge.stripped --model $model --prompt "$prompt" --max-new-tokens 128 \
        --context 512 --ignore-eos --threads "$1" --memory-budget 32 --report 2>&1 >/dev/null | tail -1)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.pop("tokens"); r.pop("text"); r["who"]="edge"; r["threads"]=int(sys.argv[2]); print(json.dumps(r))' "$r" "$1" >> "$out"
}

server() {  # threads
  local port=18431 pid
  target/release/autoglm serve --model $model --threads "$1" --port $port --response-cache-mib 0 \
    --exit-after-s 120 > /tmp/edge-serve.log 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/ready >/dev/null && break; sleep 0.1; done
  local body
  body=$(python3 -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1], "n_predict": 128, "temperature": 0, "ignore_eos": True}))' "$prompt")
  local resp hwm
  resp=$(curl -sf http://127.0.0.1:$port/completion -H 'content-type: application/json' -d "$body")
  hwm=$(awk '/VmHWM/ {print $2 * 1024}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  python3 -c '
import json,sys
r=json.loads(sys.argv[1]); t=r["timings"]; n=r["tokens_predicted"]
print(json.dumps({"who": "server", "threads": int(sys.argv[3]), "generated_tokens": n, "prompt_tokens": r["tokens_evaluated"],
  "ttft_ms": t["ttft_ms"], "total_ms": t["total_ms"],
  "decode_tokens_per_s": (n - 1) / ((t["total_ms"] - t["ttft_ms"]) / 1e3), "vm_hwm": int(sys.argv[2])}))' "$resp" "$hwm" "$1" >> "$out"
}

for r in $(seq "$rounds"); do
  for t in "${threads[@]}"; do
    if [ $((r % 2)) = 1 ]; then edge "$t"; server "$t"; else server "$t"; edge "$t"; fi
  done
done
python3 benches/edge/table.py "$out"
