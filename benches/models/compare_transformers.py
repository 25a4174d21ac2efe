"""Side by side: autoglm-models against transformers' GlmForCausalLM (eager attention),
single thread, f32, on the same checkpoint.

  python benches/models/compare_transformers.py [--rounds 8] [--out FILE]

Needs torch, transformers (5.x) and safetensors. Writes the benchmark checkpoint first
(a GlmConfig with hidden 512, 4 layers, 8 query / 2 KV heads, head_dim 64, intermediate
1408, vocab 32000, partial rotary 0.5, random weights from seed 0) to
target/bench-models/glm-512x4 with `save_pretrained`, unless it is there. Then:

* accuracy: logits of 16 tokens (`autoglm forward`) against transformers', and greedy
  continuations of a 32-token prompt (`autoglm generate --prompt-ids`) compared token
  for token;
* forward over 128 tokens at batch 1 and 8, and decoding (batch 1, 32-token prompt,
  128 greedy tokens, KV cache on both sides): our `bench` example in `--serve` mode
  and transformers run in alternating bursts in one process each, so both see the
  same machine phases; a ratio is the median over burst pairs.

Prints one JSON object per line.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "target", "bench-models", "glm-512x4")


def make_checkpoint():
    if os.path.exists(os.path.join(MODEL, "config.json")):
        return
    torch.manual_seed(0)
    cfg = transformers.GlmConfig(
        vocab_size=32000, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, head_dim=64, intermediate_size=1408, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = transformers.GlmForCausalLM(cfg).eval()
    model.save_pretrained(MODEL)


def ids(b, t, v=32000):
    """The bench example's pseudo-random ids."""
    return [[((r * 7919 + i * 104729 + 13) % (v - 3)) + 3 for i in range(t)] for r in range(b)]


def cargo_build():
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "autoglm-cli", "-p", "autoglm-models",
                    "--example", "bench"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "autoglm-cli"], cwd=ROOT, check=True)


def autoglm(*args):
    out = subprocess.run([os.path.join(ROOT, "target", "release", "autoglm"), *args], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return out


class Ours:
    def __init__(self, *args):
        self.p = subprocess.Popen([os.path.join(ROOT, "target", "release", "examples", "bench"),
                                   "--model", MODEL, "--serve", *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.p.stdout.readline())["ready"]

    def ask(self, what, n):
        self.p.stdin.write(f"{what} {n}\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())[what]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def paired(mine, theirs, rounds):
    """Alternating bursts; returns (ours, theirs, per-pair ratios)."""
    a, b, r = [], [], []
    for k in range(rounds):
        if k % 2:
            y = theirs()
            x = mine()
        else:
            x = mine()
            y = theirs()
        a += x
        b += y
        r.append(statistics.median(x) / statistics.median(y))
    return a, b, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []

    def emit(r):
        rows.append(r)
        print(json.dumps(r), flush=True)

    make_checkpoint()
    cargo_build()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    emit({"torch": torch.__version__, "transformers": transformers.__version__,
          "model": "GlmForCausalLM hidden 512, 4 layers, 8/2 heads, head_dim 64, inter 1408, vocab 32000"})
    with torch.inference_mode():
        # Accuracy.
        x = ids(1, 16)[0]
        ref = model(input_ids=torch.tensor([x])).logits[0].float()
        got = json.loads(autoglm("forward", "--model", MODEL, "--input-ids", ",".join(map(str, x))))
        got = torch.tensor(got["logits"]).reshape(got["shape"])
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        prompt = ids(1, 32)[0]
        theirs = model.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32,
                                do_sample=False, pad_token_id=0)[0, 32:].tolist()
        mine = autoglm("generate", "--model", MODEL, "--prompt-ids", ",".join(map(str, prompt)),
                       "--max-new-tokens", "32", "--ignore-eos").strip()
        mine = [int(t) for t in mine.split(",")]
        emit({"case": "accuracy", "max_abs_diff_over_max_abs_ref": err,
              "greedy_32_identical": mine == theirs})
        # Forward passes.
        for b in (1, 8):
            ours = Ours("--batch", str(b), "--seq", "128")
            inp = torch.tensor(ids(b, 128))
            n = 3 if b == 1 else 1

            def theirs_f():
                ts = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    model(input_ids=inp)
                    ts.append((time.perf_counter() - t0) * 1e3)
                return ts

            theirs_f()
            o, t, r = paired(lambda: ours.ask("forward", n), theirs_f, a.rounds * 3)
            ours.close()
            emit({"case": "forward", "batch": b, "seq": 128, "bursts": len(r),
                  "ours_ms": statistics.median(o), "transformers_ms": statistics.median(t),
                  "ratio": statistics.median(r), "ratio_quartiles": statistics.quantiles(r, n=4)})
        # Decoding.
        ours = Ours("--seq", "32", "--decode", "128")
        inp = torch.tensor([prompt])

        def theirs_d():
            t0 = time.perf_counter()
            out = model.generate(inp, max_new_tokens=128, min_new_tokens=128, do_sample=False,
                                 pad_token_id=0)
            return [(out.shape[1] - 32) / (time.perf_counter() - t0)]

        theirs_d()
        o, t, r = paired(lambda: ours.ask("decode", 1), theirs_d, a.rounds)
        ours.close()
        emit({"case": "decode", "prompt": 32, "new_tokens": 128, "rounds": len(r),
              "ours_tokens_per_s": statistics.median(o), "transformers_tokens_per_s": statistics.median(t),
              # r holds ours / theirs of tokens per second: the speedup itself.
              "speedup": statistics.median(r), "speedup_quartiles": statistics.quantiles(r, n=4)})
    if a.out:
        with open(a.out, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
