#!/usr/bin/env bash
# llama.cpp's own converter on one of our model directories: F16 GGUF.
#
#   benches/gguf/convert.sh LLAMA_CPP_DIR PYTHON MODEL_DIR OUT.gguf
#
# PYTHON needs torch, transformers, safetensors, numpy and sentencepiece. The
# converter refuses a BPE pre-tokenizer whose hash it does not know (ours are trained
# per task); as the serving recipe does (shared/bench/serving/README.md), a copy of
# the converter made here falls back to `gpt-2` when ANCHOR_FALLBACK_PRE is set.
# Nothing of llama.cpp is committed: the copy lives next to OUT.
set -euo pipefail
src=${1:?usage: convert.sh LLAMA_CPP_DIR PYTHON MODEL_DIR OUT.gguf}; py=$2; model=$3; out=$4
work=$(dirname "$out")/converter
rm -rf "$work"; mkdir -p "$work"
cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$work/"
python3 - "$work/conversion/base.py" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = '            raise NotImplementedError("BPE pre-tokenizer was not recognized - update get_vocab_base_pre()")'
assert s.count(old) == 1, "the converter changed; update convert.sh"
s = s.replace(old, '            import os\n            if os.environ.get("ANCHOR_FALLBACK_PRE"):\n                return os.environ["ANCHOR_FALLBACK_PRE"]\n' + old)
open(p, "w").write(s)
PY
PYTHONPATH="$work/gguf-py" ANCHOR_FALLBACK_PRE=gpt-2 "$py" "$work/convert_hf_to_gguf.py" \
  "$model" --outtype f16 --outfile "$out"
