"""Development check: an `autoglm run` export loads in transformers and generates the
same outputs as `predictions/test.txt` under the exported `generation_config.json`
(greedy or beam search) (development tool, not a runtime
dependency; needs torch and transformers in a venv).

  python scripts/check_export.py RUN_DIR [--n 20]

RUN_DIR is the run's output directory (with `model/`, `data/test_inputs.txt` and
`predictions/test.txt`). Prints one JSON line: how many of the first N test inputs
transformers continues exactly as autoglm did, and the largest relative logit
difference on the first prompt.
"""

import argparse
import json
import os
import subprocess

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--autoglm", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "autoglm"))
    a = ap.parse_args()
    model_dir = os.path.join(a.run_dir, "model")
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    gen = json.load(open(os.path.join(model_dir, "generation_config.json")))
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<pad>", "<s>", "</s>", "<sep>"]}
    inputs = open(os.path.join(a.run_dir, "data", "test_inputs.txt")).read().split("\n")[: a.n]
    ours = open(os.path.join(a.run_dir, "predictions", "test.txt")).read().split("\n")[: a.n]
    same = 0
    worst = 0.0
    for k, (inp, want) in enumerate(zip(inputs, ours)):
        prompt = [ids["<s>"]] + tok.encode(inp, add_special_tokens=False) + [ids["<sep>"]]
        with torch.no_grad():
            out = model.generate(
                torch.tensor([prompt]), max_new_tokens=gen["max_new_tokens"], do_sample=False,
                eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
                repetition_penalty=gen.get("repetition_penalty", 1.0),
                num_beams=gen.get("num_beams", 1), length_penalty=gen.get("length_penalty", 1.0),
            )
        text = tok.decode(out[0, len(prompt):], skip_special_tokens=True).strip()
        same += text == want
        if k == 0:
            with torch.no_grad():
                logits = model(torch.tensor([prompt])).logits[0].numpy()
            res = subprocess.run(
                [a.autoglm, "forward", "--model", model_dir, "--input-ids", ",".join(map(str, prompt))],
                capture_output=True, text=True, check=True,
            )
            got = json.loads(res.stdout)
            import numpy as np
            g = np.array(got["logits"] if "logits" in got else got["data"], dtype=np.float32).reshape(logits.shape)
            worst = float(np.abs(g - logits).max() / np.abs(logits).max())
    print(json.dumps({"case": "export_in_transformers", "inputs": len(inputs), "same_outputs": same,
                      "num_beams": gen.get("num_beams", 1), "length_penalty": gen.get("length_penalty", 1.0),
                      "logits_max_rel_diff": worst, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
