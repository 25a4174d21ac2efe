#!/usr/bin/env python3
"""Writes the committed golden fixture of autoglm-eval: the first 40 E2E lines of system
`tgen` with every per-line value that shared/bench/eval/reference_scores/e2e.json.gz holds
for them (computed with sacrebleu 2.6.0 and rouge-score 0.1.2; see that folder's README).

Usage: python3 scripts/make_eval_fixture.py [path/to/shared]
"""
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared"
doc = json.load(gzip.open(shared / "bench/eval/reference_scores/e2e.json.gz", "rt", encoding="utf-8"))
der = shared / "data/e2e/derived"
refs = [json.loads(l) for l in (der / "refs.jsonl").read_text(encoding="utf-8").split("\n")[:-1]]
hyps = (der / "hyp/tgen.txt").read_text(encoding="utf-8").split("\n")[:-1]
sysd = doc["systems"]["tgen"]
L = sysd["lines"]
out = ROOT / "crates/autoglm-eval/tests/data/e2e-tgen-40.sacrebleu-2.6.0.rouge-score-0.1.2.jsonl"
with open(out, "w", encoding="utf-8", newline="\n") as f:
    for i in range(40):
        row = dict(hyp=hyps[i], refs=refs[i])
        for k in ("sentence_bleu_13a", "bleu_stats_13a", "chrf", "chrf_stats", "chrf++", "chrf++_stats", "ter", "ter_stats"):
            row[k] = L[k][i]
        for st in ("nostem", "stem"):
            for mode in ("first_ref", "multi_max"):
                lines = sysd["rouge"][st][mode]["lines"]
                row[f"rouge/{st}/{mode}"] = {t: [lines[t]["p"][i], lines[t]["r"][i], lines[t]["f"][i]]
                                             for t in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
print("wrote", out.relative_to(ROOT))
