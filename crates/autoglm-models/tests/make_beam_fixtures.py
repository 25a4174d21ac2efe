"""Writes beam.json beside each f32 fixture: transformers' beam search outputs (development only).

  python crates/autoglm-models/tests/make_beam_fixtures.py

Needs torch and transformers (5.x); run after make_fixtures.py. For each float32
fixture it loads the saved model with transformers and runs `generate(num_beams=…,
do_sample=False)` on a left-padded batch of prompts under several settings (length
penalties, early-stopping modes, repetition penalty, n-best lists). So that finished
hypotheses and the early-stopping rule are exercised, the end-of-sequence token of each
case is one that the beams meet within a few steps (chosen from a run without one).

  {"transformers": version,
   "cases": [{"prompts": [[...]], "num_beams": k, "num_return_sequences": n,
              "max_new_tokens": m, "length_penalty": x, "early_stopping": true|false|"never",
              "repetition_penalty": r, "eos_token_id": id,
              "outputs": [[{"tokens": [...], "score": s}, ...], ...]}, ...]}
"""

import json
import os
import sys

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

SETTINGS = [
    dict(num_beams=4, num_return_sequences=1, length_penalty=1.0, early_stopping=False),
    dict(num_beams=3, num_return_sequences=3, length_penalty=1.0, early_stopping=False),
    dict(num_beams=5, num_return_sequences=2, length_penalty=0.0, early_stopping=True),
    dict(num_beams=4, num_return_sequences=1, length_penalty=2.0, early_stopping="never"),
    dict(num_beams=4, num_return_sequences=1, length_penalty=1.0, early_stopping=False,
         repetition_penalty=1.3),
]


def main():
    for name in sorted(os.listdir(OUT)):
        d = os.path.join(OUT, name)
        exp_path = os.path.join(d, "expected.json")
        if not os.path.exists(exp_path):
            continue
        with open(exp_path) as fh:
            exp = json.load(fh)
        if exp["weights_dtype"] != "float32":
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        vocab = model.config.vocab_size
        g = torch.Generator().manual_seed(11)
        rows = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (5, 3, 7)]
        width = max(map(len, rows))
        batch = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        max_new = 10
        cases = []
        for i, s in enumerate(SETTINGS):
            s = dict(s)
            rep = s.pop("repetition_penalty", 1.0)
            # An EOS token the first prompt's beams meet early: a token of its best
            # hypothesis without one, after a few steps.
            with torch.no_grad():
                free = model.generate(batch[:1], attention_mask=mask[:1], max_new_tokens=max_new,
                                      do_sample=False, num_beams=s["num_beams"], eos_token_id=None,
                                      pad_token_id=0, repetition_penalty=rep)[0, width:].tolist()
            eos = free[3 + i % 3]
            with torch.no_grad():
                out = model.generate(batch, attention_mask=mask, max_new_tokens=max_new,
                                     do_sample=False, eos_token_id=eos, pad_token_id=0,
                                     output_scores=True, return_dict_in_generate=True,
                                     repetition_penalty=rep, **s)
            seqs = out.sequences[:, width:].tolist()
            scores = out.sequences_scores.tolist()
            n = s["num_return_sequences"]
            outputs = []
            for b in range(len(rows)):
                hyps = []
                for j in range(n):
                    toks = seqs[b * n + j]
                    # Trim what follows the EOS token (padding of shorter hypotheses).
                    if eos in toks:
                        toks = toks[: toks.index(eos) + 1]
                    hyps.append({"tokens": toks, "score": scores[b * n + j]})
                outputs.append(hyps)
            cases.append(dict(prompts=rows, max_new_tokens=max_new, repetition_penalty=rep,
                              eos_token_id=eos, outputs=outputs, **s))
            print(name, s, "eos", eos, [[h["tokens"] for h in o] for o in outputs], file=sys.stderr)
        with open(os.path.join(d, "beam.json"), "w") as fh:
            json.dump({"transformers": transformers.__version__, "cases": cases}, fh)


if __name__ == "__main__":
    main()
