#!/usr/bin/env python3
"""Golden blocks for autoglm-ops' block quantizers, from the `gguf` package (gguf-py, the
Python side of llama.cpp) at a pinned version.

    python3 -m venv target/gguf-venv && target/gguf-venv/bin/pip install gguf==0.19.0
    target/gguf-venv/bin/python scripts/quant_golden.py crates/autoglm-ops/tests/data/quant_golden.json
    target/gguf-venv/bin/python scripts/quant_golden.py --check crates/autoglm-ops/tests/data/quant_golden.json

Inputs: seeded random blocks at several scales, and blocks built to hit the rounding
rules' edges (exact ties for Q8_0's half-away rounding and Q4_0/Q4_1's truncation,
constant blocks, a negative extreme, equal magnitudes of both signs, tiny and large
values). For each format, gguf's quantize_blocks bytes and dequantize_blocks values;
for Q6_K (which we only read) random super-blocks and their values.
--check regenerates and fails if the file differs (CI runs it with gguf from PyPI).
"""

import json
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

VERSION = "0.19.0"
FORMATS = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


def inputs() -> np.ndarray:
    rng = np.random.default_rng(20261207)
    blocks = []
    for scale in [1e-3, 0.02, 1.0, 30.0]:
        blocks += list(rng.normal(0.0, scale, size=(6, 32)))
    blocks += list(rng.uniform(-1, 1, size=(4, 32)))
    # Q8_0 ties: amax 127 gives d = 1, so k + 0.5 rounds half away from zero.
    b = np.array([127.0] + [k + 0.5 for k in range(-15, 16)], dtype=np.float64)
    blocks.append(b)
    blocks.append(-b)
    # Q4_0 ties: max -8 gives d = 1, id = 1, so x + 8.5 hits integers at half-steps.
    blocks.append(np.array([-8.0] + [k - 0.5 for k in range(-7, 8)] * 2 + [7.5], dtype=np.float64))
    # Q4_1: min 0, max 15 gives d = 1, so (x - min) + 0.5 ties.
    blocks.append(np.array([0.0, 15.0] + [k + 0.5 for k in range(0, 15)] * 2, dtype=np.float64))
    blocks.append(np.full(32, 0.75))  # constant: Q4_1's d = 0
    blocks.append(np.zeros(32))
    c = np.zeros(32)
    c[5], c[9] = 3.0, -3.0  # equal magnitudes: the first wins
    blocks.append(c)
    c = np.zeros(32)
    c[9], c[5] = 3.0, -3.0
    blocks.append(c)
    blocks.append(rng.normal(0, 1e-6, 32))  # scales below f16's normal range
    blocks.append(rng.normal(0, 1e3, 32))
    return np.stack(blocks).astype(np.float32)


def golden() -> dict:
    x = inputs()
    out = {"gguf": VERSION, "inputs": [[int(v) for v in row.view(np.uint32)] for row in x]}
    for name, t in FORMATS.items():
        q = quantize(x, t)
        y = dequantize(q, t).astype(np.float32)
        out[name] = {
            "blocks": [bytes(row).hex() for row in q],
            "dequantized": [[int(v) for v in row.view(np.uint32)] for row in y.reshape(len(x), 32)],
        }
    # Q6_K super-blocks (read only: llama-quantize's head format): random codes and
    # scales, and super-block scales of several magnitudes.
    rng = np.random.default_rng(6)
    raw = rng.integers(0, 256, size=(8, 210), dtype=np.uint8)
    d = np.array([1e-3, 0.02, 1.0, -0.5, 3e-5, 7.0, 0.0, 65504.0], dtype=np.float16)
    raw[:, 208:210] = d.view(np.uint8).reshape(8, 2)
    y = dequantize(raw, T.Q6_K).astype(np.float32)
    out["q6_k"] = {
        "blocks": [bytes(row).hex() for row in raw],
        "dequantized": [[int(v) for v in row.view(np.uint32)] for row in y.reshape(8, 256)],
    }
    return out


def main() -> int:
    check = sys.argv[1] == "--check"
    path = sys.argv[-1]
    text = json.dumps(golden(), separators=(",", ":")) + "\n"
    if check:
        old = open(path).read()
        if old != text:
            print(f"{path}: gguf {VERSION} now quantizes differently", file=sys.stderr)
            return 1
        print(f"{path}: matches gguf {VERSION}")
        return 0
    open(path, "w").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
