#!/usr/bin/env python3
"""The Python side of bench_vs_peers.py: sacrebleu's API on the same files and work as
`eval-all` (references cached once per metric, then every system scored).

Usage: peer_sacrebleu.py bleu-chrf|ter REFS (--jsonl | --plain REF2) HYP...
Prints one JSON line per system, like eval-all.
"""
import json
import logging
import sys


def lines(p):
    with open(p, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def main():
    logging.getLogger("sacrebleu").setLevel(logging.ERROR)
    from sacrebleu.metrics import BLEU, CHRF, TER
    what, refs_path, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
    if fmt == "--jsonl":
        refs = [json.loads(l) for l in lines(refs_path)]
        hyp_paths = sys.argv[4:]
    else:
        refs = [[a, b] for a, b in zip(lines(refs_path), lines(sys.argv[4]))]
        hyp_paths = sys.argv[5:]
    k = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(k)]
    systems = [(p, lines(p)) for p in hyp_paths]
    if what == "bleu-chrf":
        bleu, chrf = BLEU(references=streams), CHRF(references=streams)
        for p, h in systems:
            print(json.dumps({"system": p, "bleu": bleu.corpus_score(h, None).score, "chrf": chrf.corpus_score(h, None).score}))
    else:
        ter = TER(references=streams)
        for p, h in systems:
            print(json.dumps({"system": p, "ter": ter.corpus_score(h, None).score}))


if __name__ == "__main__":
    main()
