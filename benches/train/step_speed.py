"""Training step speed side by side: autoglm-train against PyTorch eager on the GLM of
the model-factory benchmark (hidden 512, 4 layers, 8/2 heads, head_dim 64, inter 1408,
vocab 32000, partial rotary 0.5; target/bench-models/glm-512x4, written by
benches/models/compare_transformers.py), one thread each, f32, batch 8 × 128 tokens.

  python benches/train/step_speed.py [--rounds 6] [--out FILE]

One step = forward, backward (cross-entropy over every position), gradient clipping
to norm 1 and AdamW. Ours: the `step_bench` example in `--serve` mode; PyTorch:
transformers' GlmForCausalLM (eager attention) with torch.optim.AdamW, in this
process. Alternating bursts of 2 steps, so both see the same machine phases; the
ratio is the median over burst pairs (ours / PyTorch: below 1 is faster). Peak memory:
ours is the executor's peak during a step (activations, gradients; weights and
optimizer state not counted), PyTorch's the growth of the process's resident set
over a step (same accounting: weights and optimizer state allocated before).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import time

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "target", "bench-models", "glm-512x4")
BENCH = os.path.join(ROOT, "target", "release", "examples", "step_bench")
B, T = 8, 128


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(MODEL, "config.json")):
        raise SystemExit("run benches/models/compare_transformers.py first (it writes the checkpoint)")
    subprocess.run(["cargo", "build", "--release", "-p", "autoglm-train", "--example", "step_bench"],
                   cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        MODEL, dtype=torch.float32, attn_implementation="eager")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    v = model.config.vocab_size
    ids = torch.tensor([[((r * 7919 + i * 104729 + 13) % (v - 3)) + 3 for i in range(T)] for r in range(B)])

    def torch_step():
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return (time.perf_counter() - t0) * 1e3

    torch_step()  # warm-up: optimizer state and gradients allocated
    base = rss_bytes()
    torch_step()
    torch_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    ours = subprocess.Popen([BENCH, "--model", MODEL, "--batch", str(B), "--seq", str(T), "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = json.loads(ours.stdout.readline())
    pairs = []
    for _ in range(a.rounds):
        ours.stdin.write("step 2\n")
        ours.stdin.flush()
        mine = json.loads(ours.stdout.readline())["step"]
        theirs = [torch_step() for _ in range(2)]
        pairs.append((statistics.median(mine), statistics.median(theirs)))
    ours.stdin.close()
    ours.wait()
    ratios = sorted(m / t for m, t in pairs)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    res = {"case": "train_step", "batch": B, "seq": T, "rounds": a.rounds,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "ours_ms": statistics.median(m for m, _ in pairs),
           "torch_ms": statistics.median(t for _, t in pairs),
           "ratio": statistics.median(ratios), "ratio_quartiles": [q[0], statistics.median(ratios), q[2]],
           "ours_peak_step_bytes": ready["peak_step_bytes"],
           "torch_peak_step_bytes_upper_bound": torch_peak}
    print(json.dumps(res))
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
