#!/usr/bin/env python3
"""Side-by-side parity check: the `autoglm eval` CLI against sacrebleu 2.6.0 and
rouge-score 0.1.2 on generated adversarial inputs and real data, over option
combinations the golden reference files do not cover. Every corpus-level and per-line
value, and every signature, is compared; any difference fails the run.

Usage: python3 scripts/compare_reference.py [--autoglm target/release/autoglm] [--quick]
Needs: pip install sacrebleu==2.6.0 rouge-score==0.1.2 nltk==3.10.4
"""
import argparse
import itertools
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9

# ---------------------------------------------------------------- adversarial inputs
PIECES = [
    "the", "The", "cat", "CAT", "sat", "running", "generalizations", "it's", "don't", "O'Neil",
    "x-1", "3-4", "1,000.5", "2018.", "3.14", "1.000,5", "10%", "$5", "€20", "£3", "¥100",
    "http://example.com/a?b=c&d=e", "https://x.org/path_(1)", "user@mail.com", "#tag", "@user",
    ".", ",", "...", "!", "?", ";", ":", "-", "--", "—", "–", "'", '"', "“", "”", "‘", "’", "«", "»", "(", ")",
    "[", "]", "{", "}", "<", ">", "&", "&amp;", "&lt;", "&quot;", "<skipped>", "/", "\\", "|", "~", "^", "_", "`",
    "+", "=", "*", "§", "°", "±", "×", "÷", "©", "®", "™", "…", "•", "→", "⇒", "∑", "√", "∞",
    "中文", "我们", "你好。", "测试，", "模型！", "（括号）", "「引用」", "日本語", "ひらがな", "カタカナ", "한국어",
    "Ⅻ", "½", "²", "٣", "१२", "ǅ", "İstanbul", "ΣΑΣ", "straße", "Café", "naïve", "Ångström", "K",
    "😀", "👍🏽", "🇩🇪", "e\u0301", "\u200b", "a\u00adb", "\ufeff",
]
SEPS = [" ", " ", " ", " ", "", "  ", "\t", "\u00a0", "\u3000", "\u2009", " \u001f "]


def gen_line(rng, max_words):
    n = rng.choice([0, 1, 2, 3, 5, 8, 13, 21, max_words])
    out = []
    for _ in range(n):
        out.append(rng.choice(PIECES))
        out.append(rng.choice(SEPS))
    s = "".join(out)
    if rng.random() < 0.1:
        s = " " + s
    return s.replace("\n", " ")


def perturb(rng, s):
    w = s.split(" ")
    if len(w) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(w))
        w[i] = rng.choice(PIECES)
    if len(w) > 3 and rng.random() < 0.5:
        i, j = sorted(rng.sample(range(len(w)), 2))
        w[i], w[j] = w[j], w[i]
    if rng.random() < 0.3:
        w = w[: max(0, len(w) - rng.randint(1, 3))]
    return " ".join(w)


def adversarial(n, seed, max_words, long_every):
    rng = random.Random(seed)
    hyps, refs = [], []
    for i in range(n):
        mw = max_words * 30 if long_every and i % long_every == 0 else max_words
        base = gen_line(rng, mw)
        k = rng.choice([1, 1, 2, 3, 4])
        rs = [perturb(rng, base) if rng.random() < 0.8 else gen_line(rng, mw) for _ in range(k)]
        if rng.random() < 0.05:
            rs[0] = ""
        h = "" if rng.random() < 0.05 else perturb(rng, base)
        hyps.append(h)
        refs.append(rs)
    return hyps, refs


def real(name, limit):
    shared = ROOT.parent / "shared" / "data"
    if name == "e2e":
        d = shared / "e2e" / "derived"
        refs = [json.loads(l) for l in (d / "refs.jsonl").read_text(encoding="utf-8").split("\n")[:-1]][:limit]
        hyps = (d / "hyp" / "zhang.txt").read_text(encoding="utf-8").split("\n")[:-1][:limit]
        return hyps, refs
    d = shared / "wmt22" / "en-zh"
    a = (d / "generaltest2022.en-zh.ref.A.zh").read_text(encoding="utf-8").split("\n")[:-1]
    b = (d / "generaltest2022.en-zh.ref.B.zh").read_text(encoding="utf-8").split("\n")[:-1]
    h = (d / "generaltest2022.en-zh.hyp.HuaweiTSC.zh").read_text(encoding="utf-8").split("\n")[:-1]
    return h[:limit], [[x, y] for x, y in zip(a, b)][:limit]


# ---------------------------------------------------------------- running both sides
class Runner:
    def __init__(self, exe, tmp):
        self.exe, self.tmp, self.n = exe, Path(tmp), 0
        self.checked, self.failures = 0, []

    def files(self, hyps, refs):
        self.n += 1
        h = self.tmp / f"h{self.n}.txt"
        r = self.tmp / f"r{self.n}.jsonl"
        h.write_text("".join(x + "\n" for x in hyps), encoding="utf-8")
        r.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in refs), encoding="utf-8")
        return h, r

    def ours(self, metric, h, r, args):
        cmd = [str(self.exe), "eval", metric, "--hyp", str(h), "--refs-jsonl", str(r), "--json", "--sentence"] + args
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"autoglm failed: {' '.join(cmd)}\n{p.stderr}")
        return json.loads(p.stdout)

    def close(self, what, got, want):
        self.checked += 1
        if isinstance(want, (int, float)) and isinstance(got, (int, float)):
            if abs(got - want) <= TOL:
                return
        elif got == want:
            return
        self.failures.append(f"{what}: ours {got!r}, reference {want!r}")


def streams(refs):
    k = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(k)]


def check_sacrebleu(run, label, hyps, refs, metric, args, obj):
    h, r = run.files(hyps, refs)
    ours = run.ours(metric, h, r, args)
    st = streams(refs)
    stats = obj._extract_corpus_statistics(hyps, st)
    corpus = obj._aggregate_and_compute(stats)
    what = f"{label} {metric} {' '.join(args)}"
    run.close(f"{what} score", ours["score"], corpus.score)
    run.close(f"{what} signature", ours["signature"], str(obj.get_signature()))
    if metric == "bleu":
        for k in ("counts", "totals", "precisions"):
            for i, (a, b) in enumerate(zip(ours[k], getattr(corpus, k))):
                run.close(f"{what} {k}[{i}]", a, float(b))
        for k in ("bp", "sys_len", "ref_len"):
            run.close(f"{what} {k}", ours[k], getattr(corpus, k))
        sent = type(obj)(**{**SENT_ARGS(obj), "effective_order": True})
        sent._cache_references(st)
        line_scores = [sent._compute_score_from_stats(list(s)).score for s in stats]
    elif metric == "ter":
        run.close(f"{what} num_edits", ours["num_edits"], corpus.num_edits)
        run.close(f"{what} ref_length", ours["ref_length"], corpus.ref_length)
        line_scores = [obj._compute_score_from_stats(list(s)).score for s in stats]
    else:
        line_scores = [obj._compute_score_from_stats(list(s)).score for s in stats]
    if len(ours["lines"]) != len(line_scores):
        run.failures.append(f"{what}: {len(ours['lines'])} lines vs {len(line_scores)}")
    for i, (a, b) in enumerate(zip(ours["lines"], line_scores)):
        run.close(f"{what} line {i + 1}", a["score"], b)


def SENT_ARGS(b):
    return dict(lowercase=b.lowercase, tokenize=b.tokenizer.signature() if b.tokenizer.signature() != "tercom" else None,
                smooth_method=b.smooth_method, smooth_value=b.smooth_value)


def check_rouge(run, label, hyps, refs, types, stem, multi, bootstrap):
    import numpy as np
    from rouge_score import rouge_scorer, scoring
    h, r = run.files(hyps, refs)
    args = ["--types", ",".join(types), "--multi", multi] + (["--stem"] if stem else [])
    if bootstrap:
        args += ["--bootstrap", "1000", "--seed", "42"]
    ours = run.ours("rouge", h, r, args)
    sc = rouge_scorer.RougeScorer(types, use_stemmer=stem)
    agg = scoring.BootstrapAggregator(n_samples=1000)
    cols = {t: [] for t in types}
    what = f"{label} rouge {' '.join(args)}"
    for i, (hy, rs) in enumerate(zip(hyps, refs)):
        d = sc.score_multi(rs, hy) if multi == "max" else sc.score(rs[0], hy)
        agg.add_scores(d)
        for t in types:
            cols[t].append(d[t])
            o = ours["lines"][i][t]
            run.close(f"{what} line {i + 1} {t} P", o["precision"], d[t].precision)
            run.close(f"{what} line {i + 1} {t} R", o["recall"], d[t].recall)
            run.close(f"{what} line {i + 1} {t} F", o["fmeasure"], d[t].fmeasure)
    for t in types:
        for k in ("precision", "recall", "fmeasure"):
            mean = sum(getattr(s, k) for s in cols[t]) / len(cols[t])
            run.close(f"{what} mean {t} {k}", ours[t][k], mean)
    if bootstrap:
        np.random.seed(42)
        a = agg.aggregate()
        for t in types:
            for b in ("low", "mid", "high"):
                for k in ("precision", "recall", "fmeasure"):
                    run.close(f"{what} bootstrap {t} {b} {k}", ours[t]["bootstrap"][b][k], float(getattr(getattr(a[t], b), k)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--autoglm", default=str(ROOT / "target" / "release" / "autoglm"))
    ap.add_argument("--quick", action="store_true", help="fewer lines and option combinations")
    a = ap.parse_args()
    logging.getLogger("sacrebleu").setLevel(logging.ERROR)
    from sacrebleu.metrics import BLEU, CHRF, TER
    t0 = time.time()
    n = 120 if a.quick else 300
    data = {"adversarial": adversarial(n, 1, 12, 50)}
    ter_data = {"adversarial": adversarial(n // 2, 2, 10, 0)}
    if (ROOT.parent / "shared" / "data").is_dir():
        data["e2e"] = real("e2e", 80)
        data["wmt22-en-zh"] = real("wmt22-en-zh", 80)
        ter_data["e2e"] = real("e2e", 20)
        ter_data["wmt22-en-zh"] = real("wmt22-en-zh", 20)
    with tempfile.TemporaryDirectory() as tmp:
        run = Runner(a.autoglm, tmp)
        smooth = [("exp", None), ("floor", None), ("floor", 0.5), ("add-k", None), ("add-k", 2), ("none", None)]
        for label, (hyps, refs) in data.items():
            for tok, lc, (sm, sv), eff in itertools.product(["none", "13a", "intl", "zh", "char"], [False, True], smooth, [False, True]):
                if a.quick and (lc and sm != "exp"):
                    continue
                args = ["--tokenize", tok, "--smooth-method", sm] + (["--lowercase"] if lc else []) + \
                       (["--smooth-value", str(sv)] if sv is not None else []) + (["--effective-order"] if eff else [])
                obj = BLEU(tokenize=tok, lowercase=lc, smooth_method=sm, smooth_value=sv, effective_order=eff)
                check_sacrebleu(run, label, hyps, refs, "bleu", args, obj)
            for nc, nw, beta, ws, eps, lc in itertools.product([6, 3, 1], [0, 1, 2, 4], [2, 1, 3], [False, True], [False, True], [False, True]):
                if a.quick and (beta != 2 or ws or lc):
                    continue
                if nc != 6 and (beta != 2 or eps):
                    continue
                args = ["--chrf-char-order", str(nc), "--chrf-word-order", str(nw), "--chrf-beta", str(beta)] + \
                       (["--chrf-whitespace"] if ws else []) + (["--chrf-eps-smoothing"] if eps else []) + (["--lowercase"] if lc else [])
                obj = CHRF(char_order=nc, word_order=nw, beta=beta, whitespace=ws, eps_smoothing=eps, lowercase=lc)
                check_sacrebleu(run, label, hyps, refs, "chrf", args, obj)
            for types, stem, multi in itertools.product([["rouge1", "rouge2", "rougeL", "rougeLsum"], ["rouge3", "rouge4", "rouge9"]], [False, True], ["max", "first"]):
                check_rouge(run, label, hyps, refs, types, stem, multi, bootstrap=(types[0] == "rouge1" and multi == "max"))
            print(f"{label}: {run.checked} values so far, {len(run.failures)} mismatches ({time.time() - t0:.0f}s)", flush=True)
        for label, (hyps, refs) in ter_data.items():
            for norm, nop, asian, cs in itertools.product([False, True], repeat=4):
                args = (["--ter-normalized"] if norm else []) + (["--ter-no-punct"] if nop else []) + \
                       (["--ter-asian-support"] if asian else []) + (["--ter-case-sensitive"] if cs else [])
                obj = TER(normalized=norm, no_punct=nop, asian_support=asian, case_sensitive=cs)
                check_sacrebleu(run, label + "-ter", hyps, refs, "ter", args, obj)
            print(f"{label} TER: {run.checked} values so far, {len(run.failures)} mismatches ({time.time() - t0:.0f}s)", flush=True)
    print(f"compare_reference: {run.checked} values compared, {len(run.failures)} mismatches, {time.time() - t0:.0f}s")
    for f in run.failures[:40]:
        print("  MISMATCH", f)
    # The plain closing line CI runners read.
    print(f"{run.checked - len(run.failures)} passed, {len(run.failures)} failed")
    sys.exit(1 if run.failures else 0)


if __name__ == "__main__":
    main()
