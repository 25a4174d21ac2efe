"""Writes the golden fixtures of autoglm-models' tests (development only).

  python crates/autoglm-models/tests/make_fixtures.py
  python crates/autoglm-models/tests/make_fixtures.py --check-export
  python crates/autoglm-models/tests/make_fixtures.py --random 50

The second form checks the other direction: every fixture written back by our
`save_pretrained` (the `export` example) opens in transformers and gives the fixture's
logits.

Needs torch, transformers (5.x) and tokenizers. For each configuration below it builds a
tiny random-weight model with transformers from a fixed seed, saves it with
`save_pretrained` (config.json + model.safetensors, the Hugging Face layout users hold)
into tests/fixtures/<name>/, and writes expected.json next to it:

  {"transformers": version, "input_ids": [[...], ...],            # a batch, equal lengths
   "logits": {"shape": [b, t, vocab], "data": [...]},              # f32, row-major
   "greedy": {"prompt_ids": [...], "max_new_tokens": n, "output_ids": [...]},
   "weights_dtype": "float32" | "bfloat16"}

The bf16 fixture stores bf16 weights; its expected logits are the f32 model's, so the
test measures what bf16 storage costs. A small BPE tokenizer trained on E2E references
(../shared/data/e2e/train.jsonl) goes with one fixture, with the text of its prompt and
its greedy continuation.
"""

import json
import os
import sys

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
SHARED = os.path.join(HERE, "..", "..", "..", "..", "shared", "data", "e2e", "train.jsonl")

VOCAB = 320

FIXTURES = [
    # name, model_type, config overrides, weights dtype
    ("glm_gqa_bias", "glm", dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                  intermediate_size=48, attention_bias=True, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                   "partial_rotary_factor": 0.5}), "float32"),
    ("glm_mha_tied", "glm", dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                  intermediate_size=40, attention_bias=False, tie_word_embeddings=True,
                                  rope_parameters={"rope_type": "default", "rope_theta": 500.0,
                                                   "partial_rotary_factor": 1.0}), "float32"),
    ("glm4_mqa", "glm4", dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                               intermediate_size=48, attention_bias=True, tie_word_embeddings=False,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": 0.5}), "float32"),
    ("gpt_neox_parallel", "gpt_neox", dict(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                           use_parallel_residual=True, attention_bias=True,
                                           tie_word_embeddings=False,
                                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                            "partial_rotary_factor": 0.25}), "float32"),
    ("gpt_neox_sequential", "gpt_neox", dict(hidden_size=32, num_attention_heads=2, intermediate_size=48,
                                             use_parallel_residual=False, attention_bias=False,
                                             tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                              "partial_rotary_factor": 1.0}), "float32"),
    ("gpt_neox_f16", "gpt_neox", dict(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                      use_parallel_residual=True, attention_bias=True,
                                      tie_word_embeddings=False,
                                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                       "partial_rotary_factor": 0.5}), "float16"),
    ("glm_bf16", "glm", dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                              intermediate_size=48, attention_bias=True, tie_word_embeddings=False,
                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                               "partial_rotary_factor": 0.5}), "bfloat16"),
]


def tokenizer():
    """A byte-level BPE with VOCAB entries, trained on E2E references."""
    lines = []
    with open(SHARED, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= 2000:
                break
            lines.append(json.loads(line)["ref"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<pad>", "<bos>", "<eos>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, tr)
    return tok


def main():
    torch.manual_seed(0)
    tok = tokenizer()
    assert tok.get_vocab_size() <= VOCAB
    prompt_text = "The Eagle is a coffee shop"
    for idx, (name, mtype, over, wdtype) in enumerate(FIXTURES):
        torch.manual_seed(1000 + idx)
        common = dict(vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
        if mtype == "gpt_neox":
            common["layer_norm_eps"] = 1e-5
        else:
            common["rms_norm_eps"] = 1e-5
        cfg = transformers.AutoConfig.for_model(mtype, **common, **over)
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
        # Norm weights and biases away from their 1/0 initialisation, so a loader that
        # drops them is caught.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.2)
                else:
                    p.mul_(3.0)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        g = torch.Generator().manual_seed(7 + idx)
        ids = torch.randint(3, VOCAB, (2, 7), generator=g)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        if name == "glm_gqa_bias":
            prompt = tok.encode(prompt_text).ids
            tok.save(os.path.join(d, "tokenizer.json"))
        else:
            prompt = torch.randint(3, VOCAB, (5,), generator=g).tolist()
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)[0].tolist()
        expected = {
            "transformers": transformers.__version__,
            "model_type": mtype,
            "weights_dtype": wdtype,
            "input_ids": ids.tolist(),
            "logits": {"shape": list(logits.shape), "data": [round(float(x), 7) for x in logits.flatten()]},
            "greedy": {"prompt_ids": prompt, "max_new_tokens": 12, "output_ids": out[len(prompt):]},
        }
        if name == "glm_gqa_bias":
            expected["greedy"]["prompt_text"] = prompt_text
            expected["greedy"]["output_text"] = tok.decode(out[len(prompt):])
        # Batched greedy generation with left padding (transformers derives each row's
        # positions from its attention mask).
        rows = [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (6, 2, 4)]
        width = max(map(len, rows))
        batch = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            outb = model.generate(batch, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)[:, width:].tolist()
        expected["greedy_batch"] = {"prompts": rows, "max_new_tokens": 8, "outputs": outb}
        if wdtype != "float32":
            model = model.to(getattr(torch, wdtype))
        model.save_pretrained(d)
        with open(os.path.join(d, "expected.json"), "w") as fh:
            json.dump(expected, fh)
        print(name, mtype, wdtype, tuple(logits.shape), "greedy", out[len(prompt):], file=sys.stderr)


def check_export():
    import subprocess
    import tempfile
    root = os.path.join(HERE, "..", "..", "..")
    for name, *_ in FIXTURES:
        src = os.path.join(OUT, name)
        with open(os.path.join(src, "expected.json")) as fh:
            exp = json.load(fh)
        with tempfile.TemporaryDirectory() as dst:
            subprocess.run(["cargo", "run", "-q", "--release", "-p", "autoglm-models", "--example", "export",
                            "--", src, dst], cwd=root, check=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
            with torch.no_grad():
                got = model(input_ids=torch.tensor(exp["input_ids"])).logits.float().flatten()
        want = torch.tensor(exp["logits"]["data"])
        err = ((got - want).abs().max() / want.abs().max()).item()
        tol = 1e-5 if exp["weights_dtype"] == "float32" else 2e-2
        print(f"{name}: transformers on our export: max|d|/max|ref| = {err:.2e}", file=sys.stderr)
        assert err <= tol, name


def check_random(n):
    """n random tiny checkpoints (model type, heads, GQA ratio, head width, rotary
    fraction, biases, tying, parallel residual, depth, vocabulary), saved by
    transformers; our `autoglm forward` against transformers' logits on random ids."""
    import random
    import subprocess
    import tempfile
    root = os.path.join(HERE, "..", "..", "..")
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "autoglm-cli"], cwd=root, check=True)
    exe = os.path.join(root, "target", "release", "autoglm")
    rng = random.Random(int(os.environ.get("SEED", "12345")))
    worst = 0.0
    for i in range(n):
        mtype = rng.choice(["glm", "glm4", "gpt_neox"])
        heads = rng.choice([1, 2, 4, 8])
        d = rng.choice([4, 8, 16])
        partial = rng.choice([0.25, 0.5, 1.0]) if d >= 8 else rng.choice([0.5, 1.0])
        common = dict(vocab_size=rng.randint(20, 200), num_hidden_layers=rng.randint(1, 3),
                      num_attention_heads=heads, intermediate_size=rng.randint(8, 80),
                      tie_word_embeddings=rng.random() < 0.5, attention_bias=rng.random() < 0.5,
                      max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      rope_parameters={"rope_type": "default", "rope_theta": rng.choice([100.0, 10000.0]),
                                       "partial_rotary_factor": partial})
        if mtype == "gpt_neox":
            common.update(hidden_size=heads * d, use_parallel_residual=rng.random() < 0.5,
                          hidden_act=rng.choice(["gelu", "gelu_new"]), layer_norm_eps=1e-5)
        else:
            kv = rng.choice([k for k in (1, 2, 4, 8) if heads % k == 0])
            common.update(hidden_size=rng.choice([8, 16, 24, 32]), num_key_value_heads=kv, head_dim=d,
                          rms_norm_eps=1e-6)
        torch.manual_seed(i)
        cfg = transformers.AutoConfig.for_model(mtype, **common)
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        t = rng.randint(1, 12)
        ids = [rng.randrange(cfg.vocab_size) for _ in range(t)]
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids])).logits[0].float()
        with tempfile.TemporaryDirectory() as dst:
            model.save_pretrained(dst)
            out = subprocess.run([exe, "forward", "--model", dst, "--input-ids", ",".join(map(str, ids))],
                                 check=True, capture_output=True, text=True).stdout
        got = json.loads(out)
        got = torch.tensor(got["logits"]).reshape(got["shape"])
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        worst = max(worst, err)
        assert err <= 1e-4, (i, mtype, common, err)
    print(f"{n} random checkpoints: worst max|d|/max|ref| = {worst:.2e}", file=sys.stderr)


if __name__ == "__main__":
    if "--random" in sys.argv:
        check_random(int(sys.argv[sys.argv.index("--random") + 1]))
    elif "--check-export" in sys.argv:
        check_export()
    else:
        main()
