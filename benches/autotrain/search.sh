#!/usr/bin/env bash
# Issue 25's search protocols: the multi-fidelity search against random search, the
# search as it was, the default configuration and random sampling in the same
# brackets, at equal wall time.
#
#   benches/autotrain/search.sh gate [SEED ...]   # 10,000-row E2E subset, 10 minutes
#                                                 # (seeds 1 2 3 4 5 unless given)
#   benches/autotrain/search.sh warm [SEED ...]   # point 3: warm start on a second task
#                                                 # (seeds 1 2 3; needs the gate's (a) runs)
#   benches/autotrain/search.sh headroom [SEED]   # (d)'s protocol at other points of the
#                                                 # space: is there anything to find?
#   benches/autotrain/search.sh workers           # search.workers: 2 trials × 1 thread
#                                                 # against 1 trial × 2 threads, by size
#   benches/autotrain/search.sh full              # point 2: all of E2E, 55 minutes,
#                                                 # (a) beside (d), then (b) beside (e)
#   benches/autotrain/search.sh tables            # rewrite the tables from the runs
#
# Runs go to target/autotrain/gate/METHOD-sSEED/ (task.yaml, log.txt with a Unix
# time before every line, the run's output directory). Two runs at a time, each with
# one kernel thread (search.threads: 1), every method the same way. Methods:
#   a  the multi-fidelity search (search.hyperband: rungs 0.17 → 1.53 budget units, an
#      epoch of the middle structure's compute each, η = 3, the middle configuration
#      first, BOHB's TPE model; 60 % of the time for the brackets, the rest extends
#      the incumbent)
#   b  random search, every trial at full length, no pruner
#   c  the search as it was at issue 25's start (auto sampler, median pruner)
#   d  the default configuration (middle of every range), one run fitted to the budget
#   e  random sampling in the same brackets as a
# Tables: target/autotrain/gate.md and gate.json (tables.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=$(cd "$ROOT/../shared" && pwd)
OUT="$ROOT/target/autotrain"
MINUTES=${MINUTES:-10}
SUBSET_SHA=a1aff39cb94cd37cbc5052410b9dc935d73b9a0bcc1bb314abe207ff583d1e8f

task() { # METHOD SEED -> task.yaml on stdout
  local m=$1 seed=$2 model training search
  local HB='min_epochs: 0.17, max_epochs: 1.53, eta: 3, search_share: 0.6'
  model='{layers: {low: 2, high: 4}, hidden: [128, 192, 256], heads: [4], kv_heads: [1, 2], mlp_ratio: {low: 2.0, high: 3.0}, rotary: [0.5]}'
  training='{lr: {low: 1.0e-3, high: 6.0e-3, log: true}, batch_size: [32, 64], epochs: {low: 1.0, high: 4.0}}'
  case $m in
    a) search="sampler: auto, trials: 1000, hyperband: {$HB}" ;;
    b) search="sampler: random, pruner: none, trials: 1000" ;;
    c) search="sampler: auto, pruner: median, trials: 12, evaluations: 4" ;;
    d) model='{layers: 3, hidden: 192, heads: 4, kv_heads: 2, mlp_ratio: 2.5, rotary: 0.5}'
       training='{lr: 2.449e-3, batch_size: 32, epochs: 100.0, weight_decay: 0.01}'
       search="trials: 1, pruner: none" ;;
    e) search="sampler: random, trials: 1000, hyperband: {$HB}" ;;
    w) search="sampler: auto, trials: 1000, warm_start: [$WARM], hyperband: {$HB}" ;;
  esac
  cat <<YAML
name: gate-$m-s$seed
data:
  input: mr
  target: ref
  train: ${TRAIN:-$OUT/e2e10k/train.jsonl}
  dev: ${DEV:-$SHARED/data/e2e/dev.jsonl}
  test: {inputs: ${TEST_IN:-$SHARED/data/e2e/derived/mr.txt}, references: ${TEST_REFS:-$SHARED/data/e2e/derived/refs.jsonl}}
cleaning:
  - normalize: nfkc
  - whitespace: collapse
  - required: [input, target]
  - length: {field: target, min_words: 2, max_words: 250}
  - dedup: pair
tokenizer: {vocab_size: 1024}
model: $model
training: $training
search: {$search, metric: rouge_l, minutes: $MINUTES, threads: 1, seed: $seed, max_len: 256,
  decoding: {max_new_tokens: 160, num_beams: 5, length_penalty: [1.0, 0.6, 1.4]}}
YAML
}

run_one() { # METHOD SEED [DIR]
  local dir="${3:-$OUT/gate/$1-s$2}"
  if [ -f "$dir/run/scores.json" ]; then echo "skip $1-s$2 (done)"; return; fi
  rm -rf "$dir" && mkdir -p "$dir"
  task "$1" "$2" > "$dir/task.yaml"
  echo "start $1-s$2 $(date -u +%FT%TZ)"
  /usr/bin/time -v "$ROOT/target/release/autoglm" run "$dir/task.yaml" --output "$dir/run" 2> "$dir/time.txt" \
    | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$dir/log.txt"
  echo "end $1-s$2 $(date -u +%FT%TZ)"
}
export -f task run_one
export OUT SHARED ROOT MINUTES

case ${1:-} in
  gate)
    shift
    seeds=${*:-1 2 3 4 5}
    cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
    python3 "$ROOT/benches/autotrain/make_e2e_subset.py" "$OUT/e2e10k/train.jsonl" | tee /dev/stderr \
      | grep -q "$SUBSET_SHA" || { echo "the subset's sha256 differs" >&2; exit 1; }
    jobs=()
    for s in $seeds; do for m in a b c d e; do jobs+=("$m $s"); done; done
    printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one "$0" "$1"'
    python3 "$ROOT/benches/autotrain/tables.py" "$OUT/gate" ;;
  warm)
    # Point 3: a second task (the football corpus of scripts/make_unseen_corpus.py),
    # searched as (a) cold and warm-started from the gate's (a) journal of the same
    # seed; both at 10 minutes, side by side.
    shift
    seeds=${*:-1 2 3}
    cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
    # 3,000 training inputs (about 10,500 rows, the size of the gate's subset).
    python3 "$ROOT/scripts/make_unseen_corpus.py" "$OUT/unseen" --train 3000
    export TRAIN="$OUT/unseen/train.jsonl" DEV="$OUT/unseen/dev.jsonl" \
      TEST_IN="$OUT/unseen/derived/mr.txt" TEST_REFS="$OUT/unseen/derived/refs.jsonl"
    jobs=()
    for s in $seeds; do
      [ -f "$OUT/gate/a-s$s/run/study.jsonl" ] || { echo "run the gate's (a) seed $s first" >&2; exit 1; }
      jobs+=("a $s $OUT/warm/cold-s$s" "w $s $OUT/warm/warm-s$s")
    done
    printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c \
      'WARM="$OUT/gate/a-s$1/run/study.jsonl" run_one "$0" "$1" "$2"'
    python3 "$ROOT/benches/autotrain/tables.py" --warm "$OUT/warm" ;;
  headroom)
    # Is there anything to find? (d)'s protocol (one configuration for the whole
    # budget) with other points of the gate's space; runs in target/autotrain/headroom.
    shift
    seed=${1:-1}
    cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
    python3 "$ROOT/benches/autotrain/make_e2e_subset.py" "$OUT/e2e10k/train.jsonl" >/dev/null
    mid='{layers: 3, hidden: 192, heads: 4, kv_heads: 2, mlp_ratio: 2.5, rotary: 0.5}'
    tr() { echo "{lr: $1, batch_size: 32, epochs: 100.0, weight_decay: 0.01}"; }
    jobs=("lr15|$mid|$(tr 1.5e-3)" "lr45|$mid|$(tr 4.5e-3)" "lr60|$mid|$(tr 6.0e-3)"
      "l2h256|{layers: 2, hidden: 256, heads: 4, kv_heads: 2, mlp_ratio: 2.5, rotary: 0.5}|$(tr 3.5e-3)"
      "l4h256|{layers: 4, hidden: 256, heads: 4, kv_heads: 2, mlp_ratio: 2.5, rotary: 0.5}|$(tr 3.0e-3)"
      "l2h128|{layers: 2, hidden: 128, heads: 4, kv_heads: 2, mlp_ratio: 2.7, rotary: 0.5}|$(tr 3.0e-3)")
    headroom_one() { # NAME|MODEL|TRAINING SEED
      local name=${1%%|*} rest=${1#*|}
      local dir="$OUT/headroom/$name-s$2"
      [ -f "$dir/run/scores.json" ] && return
      rm -rf "$dir" && mkdir -p "$dir"
      task d "$2" | sed -e "s/^name: .*/name: headroom-$name-s$2/" -e "s/^model: .*/model: ${rest%%|*}/" \
        -e "s/^training: .*/training: ${rest#*|}/" > "$dir/task.yaml"
      "$ROOT/target/release/autoglm" run "$dir/task.yaml" --output "$dir/run" \
        | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$dir/log.txt"
    }
    export -f headroom_one
    printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c "headroom_one '{}' $seed"
    grep -H "best model" "$OUT"/headroom/*-s"$seed"/log.txt ;;
  workers)
    # search.workers: two trials side by side on one kernel thread each against one
    # trial at a time on two threads, per model size (the structure fixed, the
    # learning rate searched; one bracket: 4 rungs of 0.1 budget units side by side
    # in pairs, then the best alone to 0.4 on both threads), one run at a time.
    cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
    python3 "$ROOT/benches/autotrain/make_e2e_subset.py" "$OUT/e2e10k/train.jsonl" >/dev/null
    for size in "small 2 128" "middle 3 192" "large 4 256"; do
      set -- $size
      for wt in "1 2" "2 2"; do
        w=${wt% *} t=${wt#* }
        dir="$OUT/workers/$1-w$w"
        rm -rf "$dir" && mkdir -p "$dir"
        task a 1 | sed -e "s|^name: .*|name: workers-$1-w$w|" \
          -e "s|^model: .*|model: {layers: $2, hidden: $3, heads: 4, kv_heads: 2, mlp_ratio: 2.5, rotary: 0.5}|" \
          -e "s|^training: .*|training: {lr: {low: 1.0e-3, high: 6.0e-3, log: true}, batch_size: 32, epochs: 0.4}|" \
          -e "s|^search: .*|search: {sampler: random, trials: 100, workers: $w, threads: $t, seed: 1, max_len: 256, metric: rouge_l, hyperband: {min_epochs: 0.1, eta: 4, brackets: 1},|" \
          -e "s|decoding: .*|decoding: {max_new_tokens: 64, num_beams: 1}}|" > "$dir/task.yaml"
        echo "start $1 workers $w threads $t $(date -u +%FT%TZ)"
        "$ROOT/target/release/autoglm" run "$dir/task.yaml" --output "$dir/run" \
          | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$dir/log.txt"
      done
    done
    python3 "$ROOT/benches/autotrain/tables.py" --workers "$OUT/workers" ;;
  full)
    # Point 2: all of E2E (examples/e2e-nlg.yaml's data and spaces), 55 minutes, seed 1,
    # one kernel thread per run, two runs side by side: FULL_METHODS pairs in order
    # (default "a d b e": (a) beside (d), then (b) beside (e)). Runs in target/autotrain/full.
    shift
    cargo build --release -p autoglm-cli --manifest-path "$ROOT/Cargo.toml"
    export MINUTES=${MINUTES_FULL:-55} TRAIN="$SHARED/data/e2e/train.jsonl"
    jobs=()
    for m in ${FULL_METHODS:-a d b e}; do jobs+=("$m 1 $OUT/full/$m-s1"); done
    printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one "$0" "$1" "$2"'
    python3 "$ROOT/benches/autotrain/tables.py" --full "$OUT/full" ;;
  tables)
    python3 "$ROOT/benches/autotrain/tables.py" "$OUT/gate" ;;
  *) sed -n '2,29p' "$0"; exit 2 ;;
esac
