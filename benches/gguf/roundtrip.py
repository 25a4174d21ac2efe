#!/usr/bin/env python3
"""Greedy continuations of our runtime and of llama.cpp on the same GGUF weights.

Our model directory (an `autoglm run` export) is written to GGUF by `autoglm gguf`
(F16 and Q8_0 by default); llama.cpp's `llama-server` loads each file and continues
every test prompt greedily from token ids (`/completion`, `return_tokens`); our
`autoglm generate --ids --weights STORAGE` continues the same prompts from the model
directory, stored the same way. Prints, per type, how many continuations are equal
token for token and the share of equal tokens up to the first difference, as JSON.

Usage: roundtrip.py AUTOGLM LLAMA_SERVER MODEL_DIR RUN_DIR OUT_DIR [--types f16,q8_0]
        [--max-new-tokens 64] [--threads 1] [--llama-quantize BIN] [--converted F16.gguf]
        [--prompt-ids FILE]
  RUN_DIR is the run directory (its `data/test_inputs.txt` are the prompts).
Needs the `tokenizers` package (the prompts are `<s> input <sep>` as the task frames
them).
"""
import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tokenizers import Tokenizer


def prompts(model_dir: Path, run_dir: Path) -> list[list[int]]:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    bos, sep = tok.token_to_id("<s>"), tok.token_to_id("<sep>")
    lines = (run_dir / "data" / "test_inputs.txt").read_text().splitlines()
    return [[bos] + tok.encode(line, add_special_tokens=False).ids + [sep] for line in lines]


KV = "f16"


def llama(server: str, gguf: Path, ids: list[list[int]], n: int, threads: int) -> list[list[int]]:
    port = 18093
    log = open(gguf.with_suffix(".server.log"), "w")
    proc = subprocess.Popen(
        [server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(threads), "--threads-batch", str(threads), "-c", "2048", "-np", "1",
         "--no-webui", "--cache-type-k", KV, "--cache-type-v", KV],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
        else:
            raise RuntimeError("llama-server did not start; see " + log.name)
        out = []
        for p in ids:
            body = json.dumps({"prompt": p, "n_predict": n, "temperature": 0, "top_k": 1,
                               "return_tokens": True, "cache_prompt": False}).encode()
            req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                toks = json.load(r)["tokens"]
            out.append(toks)
        return out
    finally:
        proc.terminate()
        proc.wait()


def ours(autoglm: str, model: Path, storage: str | None, ids: list[list[int]], n: int,
         work: Path) -> list[list[int]]:
    inp, outp = work / "prompts.ids", work / f"ours-{storage or model.stem}.ids"
    inp.write_text("".join(",".join(map(str, p)) + "\n" for p in ids))
    weights = ["--weights", storage] if storage else []
    subprocess.run([autoglm, "generate", "--model", str(model), *weights, "--ids",
                    "--input-file", str(inp), "--output", str(outp), "--max-new-tokens", str(n),
                    "--batch-size", "1"], check=True, stdout=subprocess.DEVNULL)
    return [[int(x) for x in line.split(",") if x] for line in outp.read_text().splitlines()]


def main() -> int:
    a = argparse.ArgumentParser()
    for name in ["autoglm", "llama_server", "model_dir", "run_dir", "out_dir"]:
        a.add_argument(name)
    a.add_argument("--types", default="f16,q8_0")
    a.add_argument("--max-new-tokens", type=int, default=64)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--llama-quantize", help="also: our F16 GGUF through llama-quantize "
                   "(default settings) to each --quantize type, run by both on that file")
    a.add_argument("--quantize", default="Q8_0,Q4_0")
    a.add_argument("--converted", help="a GGUF F16 file llama.cpp's converter made from "
                   "MODEL_DIR (benches/gguf/convert.sh): run by both, and through "
                   "llama-quantize (default settings) to each --quantize type")
    a.add_argument("--prompt-ids", help="prompts as comma-separated token ids, one per line "
                   "(instead of RUN_DIR's test inputs)")
    a.add_argument("--kv-cache", default="f16", help="llama.cpp's key/value cache type "
                   "(its default f16; f32 as ours)")
    args = a.parse_args()
    global KV
    KV = args.kv_cache
    model, run, work = Path(args.model_dir), Path(args.run_dir), Path(args.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.prompt_ids:
        ids = [[int(x) for x in l.split(",")] for l in Path(args.prompt_ids).read_text().splitlines() if l]
    else:
        ids = prompts(model, run)
    eos = json.loads((model / "config.json").read_text())["eos_token_id"]
    results = {}
    runs = []
    for ty in [t for t in args.types.split(",") if t]:
        gguf = work / f"model-{ty}.gguf"
        subprocess.run([args.autoglm, "gguf", "--model", str(model), "--to", ty, "--out", str(gguf)],
                       check=True, stdout=subprocess.DEVNULL)
        runs.append((f"ours→gguf {ty}", gguf, model, ty))
    if args.llama_quantize:
        f16 = work / "model-f16.gguf"
        if not f16.exists():
            subprocess.run([args.autoglm, "gguf", "--model", str(model), "--to", "f16", "--out",
                            str(f16)], check=True, stdout=subprocess.DEVNULL)
        for q in args.quantize.split(","):
            out = work / f"llama-quantize-{q}.gguf"
            subprocess.run([args.llama_quantize, str(f16), str(out), q], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs.append((f"llama-quantize {q}", out, out, None))
    if args.converted:
        conv = Path(args.converted)
        runs.append(("converter F16", conv, conv, None))
        for q in args.quantize.split(","):
            out = work / f"converter-{q}.gguf"
            subprocess.run([args.llama_quantize, str(conv), str(out), q], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs.append((f"converter F16 → llama-quantize {q}", out, out, None))
    for label, gguf, ours_model, ty in runs:
        theirs = llama(args.llama_server, gguf, ids, args.max_new_tokens, args.threads)
        mine = ours(args.autoglm, ours_model, ty, ids, args.max_new_tokens, work)
        # Both list the end-of-sequence token they stopped at; compare without it.
        theirs = [t[:-1] if t and t[-1] == eos else t for t in theirs]
        mine = [t[:-1] if t and t[-1] == eos else t for t in mine]
        same = sum(a == b for a, b in zip(mine, theirs))
        prefix = total = 0
        diffs = []
        for i, (a_, b_) in enumerate(zip(mine, theirs)):
            k = next((j for j, (x, y) in enumerate(zip(a_, b_)) if x != y), min(len(a_), len(b_)))
            prefix += k
            total += max(len(a_), len(b_))
            if a_ != b_:
                diffs.append({"prompt": i, "first_difference": k, "ours": a_[:k + 3], "llama": b_[:k + 3]})
        results[label] = {"prompts": len(ids), "identical": same,
                       "tokens_before_first_difference": prefix, "tokens": total,
                       "differences": diffs[:5]}
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
