#!/usr/bin/env python3
"""Writes a data-to-text corpus that shares nothing with E2E but its file layout, to
check that `examples/e2e-nlg.yaml` with only its data paths changed works on a corpus
it has never seen (issue 6's second acceptance point).

Domain: football match results. Inputs are dialogue-act style attribute lists with
another syntax than E2E's (`result(home=...;away=...;home_goals=2;...)`); texts must
*derive* facts the input only implies (who won, the score line written "2-1" from the
winner's side, "drew", "came back"), reformat numbers (attendance 12400 → "12,400"),
order goal scorers by minute, and aggregate optional attributes into one to three
sentences with several phrasings each. Like crowd-sourced references, about one
reference in twelve leaves out an optional attribute.

Output, in OUT (default /tmp/unseen):
  train.jsonl, dev.jsonl   one {"mr": ..., "ref": ...} row per reference
  derived/mr.txt           test inputs, one per line
  derived/refs.jsonl       per test input, a JSON list of its references

Deterministic for a seed:  python scripts/make_unseen_corpus.py [OUT] [--seed N]
"""

import argparse
import json
import os
import random

TOWNS = [
    "Riverton", "Kingsbridge", "Ashford", "Holloway", "Bramley", "Eastleigh", "Marston",
    "Penwick", "Caldmoor", "Thornbury", "Westfield", "Oakham", "Redcliffe", "Sandown",
    "Fairhaven", "Greystone", "Millbrook", "Northam", "Stanmore", "Whitby Bay",
    "Elmstead", "Harwick", "Lowther", "Dunmore", "Corby Vale", "Brightwater",
]
SUFFIXES = ["United", "Town", "City", "Rovers", "Athletic", "Wanderers", "Albion", "FC"]
FIRST = ["J.", "M.", "A.", "T.", "K.", "L.", "R.", "S.", "D.", "P."]
LAST = [
    "Okafor", "Lindqvist", "Moreau", "Hughes", "Baptiste", "Novak", "Kowalski", "Adeyemi",
    "Fernandes", "Walsh", "Brennan", "Takahashi", "Osei", "Petrov", "Castillo", "Murphy",
    "Schmidt", "Haddad", "Quinn", "Varga", "Nilsen", "Da Silva", "Ferris", "Mensah",
]
VENUES = [
    "Harbour Park", "the Old Showground", "Kingsway Stadium", "Mill Lane", "the Riverside Arena",
    "Castle Road", "Victoria Ground", "Beacon Park", "the Meadow", "Station Road",
]
# (name, takes "the"): "in the League Cup" but "in League One".
COMPETITIONS = [("League Cup", True), ("Premier Division", True), ("County Cup", True),
                ("League One", False), ("Championship", True), ("Challenge Trophy", True)]
DAYS = ["Saturday", "Sunday", "Tuesday", "Wednesday", "Friday"]
NUMBER_WORDS = ["nil", "one", "two", "three", "four", "five"]


def nth(n):
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st…"""
    suffix = "th" if 10 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def team(rng):
    return f"{rng.choice(TOWNS)} {rng.choice(SUFFIXES)}"


def player(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def record(rng):
    home = team(rng)
    away = team(rng)
    while away.split()[0] == home.split()[0]:
        away = team(rng)
    r = {"home": home, "away": away, "home_goals": rng.choice([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5]),
         "away_goals": rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 4])}
    if rng.random() < 0.55:
        r["competition"] = rng.choice(COMPETITIONS)[0]
    if rng.random() < 0.5:
        r["venue"] = rng.choice(VENUES)
    if rng.random() < 0.35:
        r["day"] = rng.choice(DAYS)
    if rng.random() < 0.45:
        r["attendance"] = rng.randrange(800, 42000, 50)
    total = r["home_goals"] + r["away_goals"]
    if total and rng.random() < 0.6:
        goals = sorted(rng.sample(range(2, 91), min(total, rng.choice([1, 1, 2]))))
        r["scorers"] = [(player(rng), m) for m in goals]
    if rng.random() < 0.2:
        r["sent_off"] = player(rng)
    return r


def mr(r):
    parts = [f"home={r['home']}", f"away={r['away']}",
             f"home_goals={r['home_goals']}", f"away_goals={r['away_goals']}"]
    for k in ("competition", "venue", "day", "attendance"):
        if k in r:
            parts.append(f"{k}={r[k]}")
    if "scorers" in r:
        parts.append("scorers=" + ", ".join(f"{p} {m}" for p, m in r["scorers"]))
    if "sent_off" in r:
        parts.append(f"sent_off={r['sent_off']}")
    return "result(" + ";".join(parts) + ")"


def score_clause(r, rng):
    h, a = r["home"], r["away"]
    hg, ag = r["home_goals"], r["away_goals"]
    if hg == ag:
        return rng.choice([
            f"{h} and {a} drew {hg}-{ag}",
            f"{h} drew {hg}-{ag} with {a}",
            f"{h} and {a} played out a {hg}-{ag} draw",
            f"it finished {hg}-{ag} between {h} and {a}",
        ] + ([f"{h} and {a} played out a goalless draw"] if hg == 0 else []))
    if hg > ag:
        w, l, wg, lg, where = h, a, hg, ag, "at home"
    else:
        w, l, wg, lg, where = a, h, ag, hg, "away from home"
    return rng.choice([
        f"{w} beat {l} {wg}-{lg}",
        f"{w} won {wg}-{lg} against {l}",
        f"{l} lost {lg}-{wg} to {w}",
        f"{w} won {wg}-{lg} {where} against {l}",
        f"{w} defeated {l} by {NUMBER_WORDS[wg]} goals to {NUMBER_WORDS[lg]}",
    ] + ([f"{w} kept a clean sheet in a {wg}-0 win over {l}"] if lg == 0 else []))


def clauses(r, rng):
    """The optional attributes as (key, phrase) pairs, each with several phrasings."""
    out = []
    if "competition" in r:
        c = r["competition"]
        the = "the " if dict(COMPETITIONS)[c] else ""
        kind = "tie" if "Cup" in c or "Trophy" in c else "match"
        out.append(("competition", rng.choice([f"in {the}{c}", f"in a {c} {kind}"])))
    if "venue" in r:
        out.append(("venue", rng.choice([f"at {r['venue']}", f"on the pitch at {r['venue']}"])))
    if "day" in r:
        out.append(("day", rng.choice([f"on {r['day']}", f"this {r['day']}"])))
    return out


def goal_sentence(r, rng):
    s = r["scorers"]
    names = [f"{p} ({m}')" if rng.random() < 0.3 else f"{p} in the {nth(m)} minute" for p, m in s]
    if len(s) == 1:
        return rng.choice([f"The goal came from {s[0][0]} in the {nth(s[0][1])} minute.",
                           f"{s[0][0]} scored in the {nth(s[0][1])} minute.",
                           f"{names[0]} got on the scoresheet."])
    return rng.choice([f"Goals came from {names[0]} and {names[1]}.",
                       f"{s[0][0]} opened the scoring after {s[0][1]} minutes and {s[1][0]} added another in the {nth(s[1][1])}.",
                       f"The scorers were {s[0][0]} ({s[0][1]}') and {s[1][0]} ({s[1][1]}')."])


def text(r, rng, drop):
    """One reference; `drop` names an optional attribute to leave out, as people do."""
    lead = score_clause(r, rng)
    extra = [p for k, p in clauses(r, rng) if k != drop]
    rng.shuffle(extra)
    first = lead + (" " + " ".join(extra) if extra else "")
    sentences = [first[0].upper() + first[1:] + "."]
    tail = []
    if "attendance" in r and drop != "attendance":
        n = f"{r['attendance']:,}"
        tail.append(rng.choice([f"The crowd was {n}.", f"{n} fans watched the game.",
                                f"The attendance was {n}.", f"A crowd of {n} saw it."]))
    if "scorers" in r and drop != "scorers":
        tail.append(goal_sentence(r, rng))
    if "sent_off" in r and drop != "sent_off":
        tail.append(rng.choice([f"{r['sent_off']} was sent off.",
                                f"{r['sent_off']} received a red card.",
                                f"The match saw {r['sent_off']} dismissed."]))
    rng.shuffle(tail)
    return " ".join(sentences + tail)


def references(r, rng, k):
    optional = [key for key in ("competition", "venue", "day", "attendance", "scorers", "sent_off") if key in r]
    refs = []
    for _ in range(k):
        drop = rng.choice(optional) if optional and rng.random() < 1 / 12 else None
        refs.append(text(r, rng, drop))
    return refs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="/tmp/unseen")
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--train", type=int, default=9000, help="training inputs")
    ap.add_argument("--dev", type=int, default=500)
    ap.add_argument("--test", type=int, default=600)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    seen = set()

    def fresh():
        while True:
            r = record(rng)
            m = mr(r)
            if m not in seen:
                seen.add(m)
                return r, m

    os.makedirs(os.path.join(a.out, "derived"), exist_ok=True)
    for split, n, lo, hi in (("train", a.train, 2, 5), ("dev", a.dev, 3, 6)):
        with open(os.path.join(a.out, f"{split}.jsonl"), "w") as f:
            for _ in range(n):
                r, m = fresh()
                for ref in references(r, rng, rng.randint(lo, hi)):
                    f.write(json.dumps({"mr": m, "ref": ref}) + "\n")
    with open(os.path.join(a.out, "derived", "mr.txt"), "w") as fm, \
            open(os.path.join(a.out, "derived", "refs.jsonl"), "w") as fr:
        for _ in range(a.test):
            r, m = fresh()
            fm.write(m + "\n")
            fr.write(json.dumps(references(r, rng, rng.randint(3, 6))) + "\n")


if __name__ == "__main__":
    main()
