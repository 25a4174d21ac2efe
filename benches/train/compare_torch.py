"""Training parity with PyTorch: the same tiny model, the same batches in the same
order, the same optimizer and schedule, trained by `autoglm train` and by a plain
PyTorch loop over transformers' model; per-step losses and final weights compared.

  python benches/train/compare_torch.py [--model-type glm|glm4|gpt_neox] [--steps 20]
         [--tied] [--out FILE]

Needs torch, transformers (5.x) and safetensors (development only; CI does not run it).
Builds the model with transformers from seed 0 and saves it with `save_pretrained`
(f32) into target/train-parity/<name>/model, writes 26 pre-tokenized rows of 5–24
tokens (half of them with the prompt part labelled −100) to data.jsonl, runs

  autoglm train --model … --data … --steps N --batch-size 4 --lr 3e-3 --weight-decay 0.01
                --betas 0.9,0.999 --eps 1e-8 --schedule cosine --warmup-steps 4
                --clip-norm 1.0 --no-shuffle --output …

and the PyTorch loop (torch.optim.AdamW, transformers' get_cosine_schedule_with_warmup,
clip_grad_norm_, batches of 4 rows in file order padded on the right with the
attention mask, no dropout), then prints one JSON object: the largest relative loss
difference over the steps, the largest max|Δ|/max|ref| over the final weights (per
tensor), and both loss curves. Key-bias elements on the dims rotary leaves alone have
an exactly zero gradient, which AdamW turns into noise-driven steps on both sides;
they are counted and reported apart (`idle_*`).
"""

import argparse
import json
import os
import random
import subprocess

import torch
import transformers
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "target", "release", "autoglm")

ROPE = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
CONFIGS = {
    "glm": lambda tied: transformers.GlmConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, attention_bias=True,
        tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_parameters=ROPE),
    "glm4": lambda tied: transformers.Glm4Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, attention_bias=True,
        tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rope_parameters=ROPE),
    "gpt_neox": lambda tied: transformers.GPTNeoXConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, use_parallel_residual=True, attention_bias=True,
        tie_word_embeddings=tied, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        hidden_dropout=0.0, attention_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}),
}
LR, WD, WARMUP, BATCH, CLIP = 3e-3, 0.01, 4, 4, 1.0


def rows(n=26, vocab=256, seed=0):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        length = rnd.randint(5, 24)
        ids = [rnd.randint(3, vocab - 1) for _ in range(length)]
        labels = list(ids)
        if i % 2 == 1:
            prompt = rnd.randint(1, length - 2)
            labels[:prompt] = [-100] * prompt
        out.append({"input_ids": ids, "labels": labels})
    return out


def torch_losses(model_dir, data, steps):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    sched = transformers.get_cosine_schedule_with_warmup(opt, WARMUP, steps)
    per_epoch = (len(data) + BATCH - 1) // BATCH
    losses = []
    for step in range(steps):
        j = step % per_epoch
        batch = data[j * BATCH:(j + 1) * BATCH]
        t = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [0] * (t - len(r["input_ids"])) for r in batch])
        att = torch.tensor([[1] * len(r["input_ids"]) + [0] * (t - len(r["input_ids"])) for r in batch])
        lab = torch.tensor([r["labels"] + [-100] * (t - len(r["labels"])) for r in batch])
        out = model(input_ids=ids, attention_mask=att, labels=lab)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    # Compared file to file: both sides' weights as save_pretrained writes them.
    saved = os.path.join(os.path.dirname(model_dir), "torch")
    model.save_pretrained(saved)
    return losses, load_file(os.path.join(saved, "model.safetensors"))


def idle_elements(name, tensor, cfg):
    """Elements whose gradient is zero in exact arithmetic: the key bias on the head
    dims rotary leaves alone adds the same q·b to every score of a query, which softmax
    cancels. AdamW turns their rounding-noise gradients into full-size steps of random
    sign (in PyTorch as in ours), so they are reported apart, not compared."""
    mask = torch.zeros_like(tensor, dtype=torch.bool)
    heads = cfg.num_attention_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    rot = int(d * cfg.rope_parameters.get("partial_rotary_factor", 1.0))
    if name.endswith("k_proj.bias"):
        for h in range(tensor.shape[0] // d):
            mask[h * d + rot:(h + 1) * d] = True
    elif name.endswith("query_key_value.bias"):
        for h in range(heads):
            k0 = h * 3 * d + d
            mask[k0 + rot:k0 + d] = True
    return mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-type", default="glm", choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    name = a.model_type + ("_tied" if a.tied else "")
    work = os.path.join(ROOT, "target", "train-parity", name)
    model_dir, out_dir = os.path.join(work, "model"), os.path.join(work, "ours")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS[a.model_type](a.tied)).float()
    model.save_pretrained(model_dir)
    data = rows()
    data_path = os.path.join(work, "data.jsonl")
    with open(data_path, "w") as f:
        for r in data:
            f.write(json.dumps(r) + "\n")
    if not os.path.exists(CLI):
        subprocess.run(["cargo", "build", "--release", "-p", "autoglm-cli"], cwd=ROOT, check=True)
    subprocess.run([CLI, "train", "--model", model_dir, "--data", data_path, "--steps", str(a.steps),
                    "--batch-size", str(BATCH), "--lr", str(LR), "--weight-decay", str(WD),
                    "--betas", "0.9,0.999", "--eps", "1e-8", "--schedule", "cosine",
                    "--warmup-steps", str(WARMUP), "--clip-norm", str(CLIP), "--no-shuffle",
                    "--output", out_dir], check=True, stdout=subprocess.DEVNULL)
    ours = [json.loads(l)["loss"] for l in open(os.path.join(out_dir, "losses.jsonl"))]
    ref, weights = torch_losses(model_dir, data, a.steps)
    loss_rel = max(abs(x - y) / abs(y) for x, y in zip(ours, ref))
    got = load_file(os.path.join(out_dir, "model.safetensors"))
    start = load_file(os.path.join(model_dir, "model.safetensors"))
    worst, worst_update, worst_name, idle_worst, idle_count = 0.0, 0.0, "", 0.0, 0
    cfg = CONFIGS[a.model_type](a.tied)
    for k, v in weights.items():
        if k not in got:
            if a.tied and k.endswith(("lm_head.weight", "embed_out.weight")):
                continue
            raise SystemExit(f"our export lacks {k}")
        idle = idle_elements(k, v, cfg)
        diff = (got[k] - v).abs()
        scale = max(v.abs().max().item(), 1e-12)
        if idle.any():
            idle_worst = max(idle_worst, diff[idle].max().item() / scale)
            idle_count += int(idle.sum())
        d = diff[~idle].max().item()
        rel = d / scale
        moved = (v - start[k]).abs()[~idle].max().item() if k in start else 0.0
        if rel > worst:
            worst, worst_name = rel, k
        worst_update = max(worst_update, d / max(moved, 1e-12))
    res = {"case": "train_parity", "model_type": a.model_type, "tied": a.tied, "steps": a.steps,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "max_loss_rel_diff": loss_rel, "max_weight_rel_diff": worst, "worst_weight": worst_name,
           "max_weight_diff_over_update": worst_update,
           "idle_elements": idle_count, "idle_max_weight_rel_diff": idle_worst,
           "ours": ours, "torch_losses": ref}
    print(json.dumps(res))
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
