#!/usr/bin/env bash
# Side by side: llama.cpp's llama-server and `autoglm serve` on the same model, driven by
# the same load generator (shared/bench/serving/loadgen.py) with the same settings, one
# server at a time, alternating which goes first. Development machine only (never CI):
# llama-server is built from the PyPI sdist of llama-cpp-python as shared/bench/serving/README.md says.
#
# usage: benches/serving/side_by_side.sh LLAMA_SERVER MODELS_DIR OUT.jsonl
#   MODELS_DIR holds glm-tiny/ and glm-tiny-f16/ (HF layout; make_model.py, then a .half() copy)
#   and glm-tiny-f32.gguf / glm-tiny-f16.gguf (convert_hf_to_gguf.py), plus prompts.json;
#   for a quantized DTYPE (q8_0, q4_0) glm-tiny-DTYPE/ (`autoglm quantize --method rtn`) and
#   glm-tiny-DTYPE.gguf (`autoglm gguf`), which hold the same blocks.
# env: THREADS="1 2", DTYPES="f32 f16", ROUNDS=1 (interleaved passes over every
#      configuration), PY (python with aiohttp), AUTOGLM (binary),
#      LEVELS (loadgen invocations, ';'-separated), SHARED (the shared folder).
set -u
LLAMA=$1; DIR=$2; OUT=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
PY=${PY:-python3}
AUTOGLM=${AUTOGLM:-$ROOT/target/release/autoglm}
PORT=${PORT:-18080}
LEVELS=${LEVELS:-"--mode single --n 5;--mode poisson --rates 2 --max-s 40 --max-req 200 --drain-s 90;--mode closed --concurrency 16 --max-s 30 --max-req 200"}
LOG=$(mktemp -d)

wait_up() {  # PID LABEL: polls /health every 20 ms; the seconds from launch to the
  # first healthy answer (load time: weights read, repacked, ready) go to OUT.load.jsonl
  for _ in $(seq 1 6000); do
    if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then
      local now; now=$(date +%s.%N)
      echo "{\"label\": \"$2\", \"load_s\": $(awk "BEGIN{print $now - $STARTED}")}" >> "$OUT.load.jsonl"
      return 0
    fi
    kill -0 "$1" 2>/dev/null || { echo "server died"; tail -20 "$LOG/server.log"; return 1; }
    sleep 0.02
  done
  return 1
}

run_levels() {  # LABEL
  IFS=';' read -ra levels <<< "$LEVELS"
  for args in "${levels[@]}"; do
    # shellcheck disable=SC2086
    "$PY" "$SHARED/bench/serving/loadgen.py" --url "http://127.0.0.1:$PORT" \
      --prompts "$DIR/prompts.json" --label "$1" --out "$OUT" $args
  done
}

llama() {  # THREADS DTYPE
  STARTED=$(date +%s.%N)
  "$LLAMA" -m "$DIR/glm-tiny-$2.gguf" --host 127.0.0.1 --port "$PORT" --threads "$1" --threads-batch "$1" \
    -c 2048 -np 16 --cont-batching --no-webui \
    --override-kv chatglm.context_length=int:2048,chatglm.attention.layer_norm_rms_epsilon=float:1.5625e-07 \
    > "$LOG/server.log" 2>&1 &
  local pid=$!
  wait_up $pid "llama.cpp_$2_t$1_np16" && { echo "llama-server t$1 $2 up; load avg $(cut -d' ' -f1-3 /proc/loadavg)"; run_levels "llama.cpp_$2_t$1_np16"; }
  kill $pid; wait $pid 2>/dev/null
}

ours() {  # THREADS DTYPE
  local model="$DIR/glm-tiny"
  [ "$2" != f32 ] && model="$DIR/glm-tiny-$2"
  local root; root=$(mktemp -d)
  cp -r "$model" "$root/m"
  STARTED=$(date +%s.%N)
  "$AUTOGLM" serve --model "$root/m" --port "$PORT" --threads "$1" --response-cache-mib 0 \
    > "$LOG/server.log" 2>&1 &
  local pid=$!
  wait_up $pid "autoglm_$2_t$1" && { echo "autoglm t$1 $2 up; load avg $(cut -d' ' -f1-3 /proc/loadavg)"; run_levels "autoglm_$2_t$1"; }
  kill -INT $pid; wait $pid 2>/dev/null
  rm -rf "$root"
}

i=0
for r in $(seq 1 "${ROUNDS:-1}"); do
  for t in ${THREADS:-1 2}; do
    for d in ${DTYPES:-f32 f16}; do
      if [ $((i % 2)) = 0 ]; then llama "$t" "$d"; ours "$t" "$d"; else ours "$t" "$d"; llama "$t" "$d"; fi
      i=$((i + 1))
    done
  done
done
"$PY" "$SHARED/bench/serving/tables.py" "$OUT"
