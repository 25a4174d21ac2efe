"""Writes crates/autoglm-ops/tests/data/glm_block_small.safetensors: PyTorch's own
output for a small version of the benchmark block (bench_torch.py's Block with hidden
32, 4 query / 2 KV heads of 8, rotary on 4 dims, SwiGLU 64, seq 16, batch 2), with the
weights (projections transposed to [in, out]) and inputs, so the Rust test can check the
IR + executor against PyTorch without PyTorch.

  python benches/graph/make_golden.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.abspath(os.path.join(ROOT, "..", "shared", "bench", "graph")))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import bench_torch as bt  # noqa: E402

bt.HIDDEN, bt.NQ, bt.NKV, bt.SEQ = 32, 4, 2, 16
bt.HEAD = bt.HIDDEN // bt.NQ
bt.ROT = 4
bt.INTER = 64

torch.manual_seed(0)
blk = bt.Block().eval()
with torch.no_grad():
    blk.ln1.w.uniform_(0.5, 1.5)
    blk.ln2.w.uniform_(0.5, 1.5)
x = torch.randn(2, bt.SEQ, bt.HIDDEN)
cos, sin = bt.rope_tables(torch.float32)
mask = torch.full((bt.SEQ, bt.SEQ), float("-inf")).triu(1)
with torch.no_grad():
    out = blk(x, cos, sin, mask)
t = {"x": x, "cos": cos, "sin": sin, "mask": mask, "out": out,
     "ln1.w": blk.ln1.w.detach(), "ln2.w": blk.ln2.w.detach()}
for name in ("q", "k", "v", "o", "gate", "up", "down"):
    t[f"{name}.weight"] = getattr(blk, name).weight.detach().T.contiguous()
path = os.path.join(ROOT, "crates", "autoglm-ops", "tests", "data", "glm_block_small.safetensors")
save_file({k: v.contiguous() for k, v in t.items()}, path)
print(path, os.path.getsize(path), "bytes; torch", torch.__version__)
