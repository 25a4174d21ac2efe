#!/usr/bin/env python3
"""A small GGUF file written by the `gguf` Python package (gguf-py, llama.cpp's own
writer) at a pinned version, and a JSON list of what it holds, for autoglm-models'
GGUF reader and writer tests (`tests/gguf.rs`): the reader must find every key with
its type and value and every tensor with its dimensions, type and bytes; the writer,
given the same content, must produce the same bytes.

    python3 -m venv target/gguf-venv && target/gguf-venv/bin/pip install gguf==0.19.0
    target/gguf-venv/bin/python scripts/gguf_golden.py crates/autoglm-models/tests/data
    target/gguf-venv/bin/python scripts/gguf_golden.py --check crates/autoglm-models/tests/data

--check writes to a temporary folder and fails if either file differs (CI runs it
with gguf from PyPI).
"""

import filecmp
import json
import pathlib
import sys
import tempfile

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

VERSION = "0.19.0"


def write(folder: pathlib.Path) -> None:
    path = folder / "golden.gguf"
    w = gguf.GGUFWriter(str(path), "glm4")
    w.add_uint32("glm4.block_count", 1)
    w.add_uint32("glm4.context_length", 256)
    w.add_float32("glm4.attention.layer_norm_rms_epsilon", 1.5625e-07)
    w.add_float32("glm4.rope.freq_base", 10000.0)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_int64("test.i64", -(2**40))
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "é", "Ġthe", "漢"])
    w.add_array("tokenizer.ggml.token_type", [3, 3, 1, 1, 1])
    w.add_array("test.floats", [0.5, -1.25])
    w.add_array("test.bools", [True, False, True])
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, size=(3, 64)).astype(np.float32)
    w.add_tensor("token_embd.weight", x)
    w.add_tensor("output_norm.weight", np.ones(5, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", x.astype(np.float16))
    for name, t in [("blk.0.attn_k.weight", T.Q8_0), ("blk.0.attn_v.weight", T.Q4_0),
                    ("blk.0.ffn_up.weight", T.Q4_1), ("blk.0.ffn_down.weight", T.BF16)]:
        w.add_tensor(name, quantize(x, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(str(path))
    kv = []
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            sub = f.types[1]
            vals = [f.parts[i].tolist()[0] if sub != gguf.GGUFValueType.STRING
                    else bytes(f.parts[i]).decode() for i in f.data]
            kv.append([f.name, int(t), int(sub), vals])
        elif t == gguf.GGUFValueType.STRING:
            kv.append([f.name, int(t), None, bytes(f.parts[f.data[0]]).decode()])
        else:
            kv.append([f.name, int(t), None, f.parts[f.data[0]].tolist()[0]])
    tensors = [{"name": t.name, "dims": [int(d) for d in t.shape], "type": int(t.tensor_type),
                "offset": int(t.data_offset) - int(r.data_offset),
                "hex": bytes(t.data.tobytes()).hex()} for t in r.tensors]
    (folder / "golden.gguf.json").write_text(
        json.dumps({"gguf": VERSION, "data_offset": int(r.data_offset), "metadata": kv,
                    "tensors": tensors}, indent=1) + "\n")


def main() -> int:
    folder = pathlib.Path(sys.argv[-1])
    if sys.argv[1] != "--check":
        write(folder)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write(pathlib.Path(tmp))
        for f in ["golden.gguf", "golden.gguf.json"]:
            if not filecmp.cmp(folder / f, pathlib.Path(tmp) / f, shallow=False):
                print(f"{folder / f}: gguf {VERSION} now writes it differently", file=sys.stderr)
                return 1
    print(f"{folder}: matches gguf {VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
