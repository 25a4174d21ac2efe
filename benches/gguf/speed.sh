#!/usr/bin/env bash
# Prompt processing and generation speed, ours against llama.cpp's llama-bench, on the
# same GGUF files (issue 27's point 2): the serving benchmark's model shape
# (shared/bench/serving: GLM, hidden 512, 4 layers, 8/2 heads, vocab 32,000, 44 M
# parameters) with random weights made in Rust, written by `autoglm gguf` as F16,
# Q8_0 and Q4_0; both read those files. Rounds interleave the two programs; each
# round runs llama-bench once and ours once per file and thread count.
#
#   benches/gguf/speed.sh LLAMA_BENCH OUT.jsonl [ROUNDS=5] [THREADS="1 2"] [P=512] [N=128]
set -euo pipefail
bench=$1 out=$2 rounds=${3:-5} threads=${4:-"1 2"} p=${5:-512} n=${6:-128}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${WORK:-$root/target/gguf-speed}
mkdir -p "$work"
cargo build --release -q -p autoglm-cli --bin autoglm
cargo build --release -q -p autoglm-models --example random_model --example llama_bench
bin=$root/target/release
cat > "$work/config.json" <<'EOF'
{"architectures": ["GlmForCausalLM"], "model_type": "glm", "vocab_size": 32000,
 "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4,
 "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
 "partial_rotary_factor": 0.5, "max_position_embeddings": 2048, "rms_norm_eps": 1.5625e-07,
 "pad_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": false}
EOF
[ -f "$work/model/model.safetensors" ] || "$bin/examples/random_model" "$work/config.json" "$work/model"
for ty in f16 q8_0 q4_0; do
  [ -f "$work/model-$ty.gguf" ] || "$bin/autoglm" gguf --model "$work/model" --to "$ty" --out "$work/model-$ty.gguf"
done
: > "$out"
for r in $(seq 1 "$rounds"); do
  for ty in f16 q8_0 q4_0; do
    for t in $threads; do
      f=$work/model-$ty.gguf
      "$bench" -m "$f" -p "$p" -n "$n" -t "$t" -r 1 -o jsonl 2>/dev/null \
        | python3 -c "import json,sys
for l in sys.stdin:
    d=json.loads(l); print(json.dumps({'who':'llama.cpp','round':$r,'type':'$ty','threads':$t,'n_prompt':d['n_prompt'],'n_gen':d['n_gen'],'ts':d['avg_ts']}))" >> "$out"
      "$bin/examples/llama_bench" -m "$f" -p "$p" -n "$n" -t "$t" -r 1 \
        | python3 -c "import json,sys
for l in sys.stdin:
    d=json.loads(l); print(json.dumps({'who':'autoglm','round':$r,'type':'$ty','threads':$t,'n_prompt':d['n_prompt'],'n_gen':d['n_gen'],'ts':d['avg_ts']}))" >> "$out"
    done
  done
done
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r['type'], r['threads'], 'pp' if r['n_prompt'] else 'tg') for r in rows})
print("| type | threads | test | llama.cpp t/s (median) | ours t/s (median) | ours / llama.cpp: median [quartiles] |")
print("|---|---|---|---|---|---|")
for ty, t, test in keys:
    def ts(who):
        return {r['round']: r['ts'] for r in rows if (r['type'], r['threads'], 'pp' if r['n_prompt'] else 'tg') == (ty, t, test) and r['who'] == who}
    a, b = ts('llama.cpp'), ts('autoglm')
    ratios = sorted(b[k] / a[k] for k in a if k in b)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    print(f"| {ty} | {t} | {test} | {statistics.median(a.values()):.1f} | {statistics.median(b.values()):.1f} | {statistics.median(ratios):.2f} [{q[0]:.2f}, {q[2]:.2f}] |")
EOF
