"""Held-out agreement of our instruction checkers with the reference's own code, and what a verdict costs.

Answers the tests never see: the answer generator under other seeds, and witnesses of drawn sets mutated the
way a model slips (a line dropped, a comma or a capital put in, markdown bold added, a paragraph repeated, a
divider moved, the text cut short). Every kind of the registry, with drawn kwargs, on every answer: our
strict and loose verdicts against the reference checkers' (IFEval's and IFBench's code as ``if-verifiable``
ships it, judged as IFEval's ``evaluation_lib`` judges). Then the time per verdict, ours against the
reference's, on the same answers (the same-run baseline), with langdetect's cache cleared for each side.

    python benchmarks/ifeval_agreement.py [--answers 1500] [--seed 1000]
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    roll = rng.randrange(7)
    if roll == 0 and len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    elif roll == 1:
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace(" ", ", ", 1)
    elif roll == 2:
        i = rng.randrange(len(lines))
        lines[i] = lines[i].upper() if rng.random() < 0.5 else lines[i].capitalize()
    elif roll == 3:
        i = rng.randrange(len(lines))
        lines[i] = f"**{lines[i]}**"
    elif roll == 4:
        lines.append(rng.choice(lines))
    elif roll == 5:
        lines.insert(rng.randrange(len(lines) + 1), "***")
    else:
        return text[: max(1, int(len(text) * rng.uniform(0.5, 0.95)))]
    return "\n".join(lines)


def held_out(n: int, seed: int) -> list[str]:
    from personahub_dagster.core.instructions import draw, witness
    from tests.support.if_answers import REQUEST, answers

    rng = random.Random(seed)
    texts = answers(n // 2, seed=seed)
    while len(texts) < n:
        chosen = draw(f"held-out-{len(texts)}", seed, 1 + rng.randrange(3), REQUEST)
        texts.append(mutate(witness(chosen), rng))
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.CRITICAL)

    import langdetect

    from personahub_dagster.core.instructions import KINDS, Constraint
    from tests.support.if_answers import REQUEST
    from tests.support.reference_if import reference, verdicts

    reference()
    texts = held_out(args.answers, args.seed)
    rng = random.Random(args.seed)
    cases = [(t, k, k.draw(rng.randrange, REQUEST)) for t in texts for k in KINDS.values()]
    plain = langdetect.detect

    def timed(judge) -> tuple[list, float]:
        langdetect.detect = functools.lru_cache(maxsize=None)(plain)  # each side pays for its own detection
        start = time.perf_counter()
        out = [judge(t, k, a) for t, k, a in cases]
        return out, time.perf_counter() - start

    ours, t_ours = timed(lambda t, k, a: (Constraint(k.id, a).check(t), Constraint(k.id, a).check_loose(t)))
    theirs, t_ref = timed(lambda t, k, a: verdicts(k.family, t, [k.id], [a], REQUEST)[0])
    per_kind, wrong = Counter(), Counter()
    for (_, kind, _), a, b in zip(cases, ours, theirs, strict=True):
        per_kind[kind.family] += 1
        wrong[kind.id] += a != b
    passed = Counter(k.family for (_, k, _), v in zip(cases, ours, strict=True) if v[0])

    print(f"held-out answers: {len(texts)} (seed {args.seed}); kinds: {len(KINDS)}\n")
    print("| family | verdicts | pass (strict) | agree, strict and loose |")
    print("| --- | ---: | ---: | ---: |")
    for family in ("ifeval", "ifbench"):
        bad = sum(n for kid, n in wrong.items() if KINDS[kid].family == family)
        n = per_kind[family]
        print(f"| {family} | {n:,} | {passed[family] / n:.1%} | {n - bad:,} ({(n - bad) / n:.2%}) |")
    print("\n| checker | verdicts | seconds | µs per verdict (strict + loose) |")
    print("| --- | ---: | ---: | ---: |")
    for name, t in (("reference (if-verifiable)", t_ref), ("ours (core/instructions)", t_ours)):
        print(f"| {name} | {len(cases):,} | {t:.1f} | {t / len(cases) * 1e6:,.0f} |")
    if any(wrong.values()):
        print("\ndisagreements:", {k: n for k, n in wrong.items() if n})
        sys.exit(1)


if __name__ == "__main__":
    main()
