#!/usr/bin/env bash
# Runs on the lent GPU machine (no Rust there): the prebuilt `gpu_check` (conformance
# suite on CUDA, then kernel timings) and PyTorch's roofline on the same card.
# Prepared by `cargo xtask gpu-check`, which puts this script, roofline.py and the
# stripped binary in target/gpu-check/. Results go to $OUT (or ./gpu-out).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/../gpu-out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# NVRTC (cubecl compiles its CUDA kernels at run time) from PyTorch's wheels.
nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
if [ -n "$nv" ]; then
  export LD_LIBRARY_PATH="$(find "$nv" -maxdepth 2 -name lib -type d | tr '\n' ':')${LD_LIBRARY_PATH:-}"
fi
"$here/gpu_check" --backend cuda --out "$out/ours.json" > "$out/gpu_check.log" 2>&1
status=$?
tail -40 "$out/gpu_check.log"
python3 "$here/roofline.py" --ours "$out/ours.json" --json "$out/torch.json" --table "$out/table.md"
exit $status
