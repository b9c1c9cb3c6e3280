"""Checkable constraints for instruction following: each kind an instruction sentence and a checker in
code (IFEval's idea, Zhou et al. 2023; Tülu 3 drew its persona IF set this way), so an answer is judged
by a function, not by a model — the verdicts train with rewards that cannot be argued with.

A constraint is a kind and its parameters, drawn by a seeded hash (the same persona and seed always get
the same constraints); :func:`describe` renders the sentence appended to the task, :func:`check` returns
``(passed, detail)``. Kinds that contradict each other are never drawn together (:data:`CONFLICTS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.stages.language import ENGLISH, detect_language, language_name, written_in
from personahub_dagster.core.stages.parsing import words

END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have further questions.")
KEYWORDS = ("budget", "schedule", "safety", "history", "community", "quality", "training", "weather")
LANGUAGES = ("fr", "de", "es", "it", "pt")
_SENTENCE = re.compile(r"[^.!?]+[.!?]+")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*[^\n*]+\*")
_PLACEHOLDER = re.compile(r"\[[^\]\n]+\]")
_TITLE = re.compile(r"<<[^\n]+>>")


@dataclass(frozen=True)
class Kind:
    """One constraint kind: how its parameters are drawn, what the instruction says, how it is checked."""

    name: str
    draw: Callable[[Callable[[int], int]], dict[str, Any]]  # takes pick(n) → 0..n-1
    says: Callable[[dict[str, Any]], str]
    check: Callable[[str, dict[str, Any]], tuple[bool, str]]


def _count(found: int, op: str, n: int, what: str) -> tuple[bool, str]:
    ok = {"at most": found <= n, "at least": found >= n, "exactly": found == n}[op]
    return ok, f"{found} {what} ({op} {n})"


def _json(text: str) -> tuple[bool, str]:
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return False, f"not JSON: {exc.msg}"
    return True, "valid JSON"


def _postscript(text: str) -> tuple[bool, str]:
    """A line starting with P.S. after the answer itself (not as its first line)."""
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    at = [i for i, x in enumerate(lines) if x.startswith("P.S.")]
    if not at:
        return False, "no P.S."
    return at[-1] > 0, "P.S. after the answer" if at[-1] > 0 else "P.S. before the answer"


def _keywords(text: str, p: dict) -> tuple[bool, str]:
    have = set(words(text))
    missing = [k for k in p["keywords"] if k not in have]
    return not missing, f"missing {missing}" if missing else "all present"


def _language(text: str, p: dict) -> tuple[bool, str]:
    if p["language"] == ENGLISH:
        found = detect_language(text)
        return found == ENGLISH, f"written in {found}"
    ok = written_in(text, p["language"])
    return ok, f"{'in' if ok else 'not in'} {language_name(p['language'])}"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind(
            "max_words",
            lambda pick: {"n": 50 + 25 * pick(7)},
            lambda p: f"Answer in at most {p['n']} words.",
            lambda t, p: _count(len(words(t)), "at most", p["n"], "words"),
        ),
        Kind(
            "min_words",
            lambda pick: {"n": 120 + 40 * pick(5)},
            lambda p: f"Answer in at least {p['n']} words.",
            lambda t, p: _count(len(words(t)), "at least", p["n"], "words"),
        ),
        Kind(
            "max_sentences",
            lambda pick: {"n": 2 + pick(4)},
            lambda p: f"Use at most {p['n']} sentences.",
            lambda t, p: _count(len(_SENTENCE.findall(t)), "at most", p["n"], "sentences"),
        ),
        Kind(
            "paragraphs",
            lambda pick: {"n": 2 + pick(3)},
            lambda p: f"Write exactly {p['n']} paragraphs, separated by a blank line.",
            lambda t, p: _count(
                len([x for x in re.split(r"\n\s*\n", t.strip()) if x.strip()]),
                "exactly",
                p["n"],
                "paragraphs",
            ),
        ),
        Kind(
            "bullets",
            lambda pick: {"n": 3 + pick(4)},
            lambda p: (
                f"Your answer must contain exactly {p['n']} bullet points, each a line starting with '- '."
            ),
            lambda t, p: _count(len(_BULLET.findall(t)), "exactly", p["n"], "bullet points"),
        ),
        Kind(
            "include_keywords",
            lambda pick: {
                "keywords": sorted({KEYWORDS[pick(len(KEYWORDS))], KEYWORDS[pick(len(KEYWORDS) - 1)]})
            },
            lambda p: f"Include the words {', '.join(repr(k) for k in p['keywords'])}.",
            _keywords,
        ),
        Kind(
            "exclude_keyword",
            lambda pick: {"keyword": ["very", "really", "just", "basically"][pick(4)]},
            lambda p: f"Do not use the word '{p['keyword']}'.",
            lambda t, p: (
                p["keyword"] not in words(t),
                f"'{p['keyword']}' used {words(t).count(p['keyword'])} times",
            ),
        ),
        Kind(
            "keyword_frequency",
            lambda pick: {"keyword": KEYWORDS[pick(len(KEYWORDS))], "n": 2 + pick(3)},
            lambda p: f"Use the word '{p['keyword']}' at least {p['n']} times.",
            lambda t, p: _count(words(t).count(p["keyword"]), "at least", p["n"], f"'{p['keyword']}'"),
        ),
        Kind(
            "json_format",
            lambda pick: {},
            lambda p: "Your entire answer must be valid JSON (you may wrap it in a ```json block).",
            lambda t, p: _json(t),
        ),
        Kind(
            "title",
            lambda pick: {},
            lambda p: "Give your answer a title wrapped in double angle brackets, like <<a title>>.",
            lambda t, p: (bool(_TITLE.search(t)), "title found" if _TITLE.search(t) else "no <<title>>"),
        ),
        Kind(
            "lowercase",
            lambda pick: {},
            lambda p: "Write your entire answer in lowercase letters; no capital letters at all.",
            lambda t, p: (t == t.lower(), "all lowercase" if t == t.lower() else "has capital letters"),
        ),
        Kind(
            "uppercase",
            lambda pick: {},
            lambda p: "Write your entire answer in capital letters.",
            lambda t, p: (t == t.upper(), "all capitals" if t == t.upper() else "has lowercase letters"),
        ),
        Kind(
            "end_phrase",
            lambda pick: {"phrase": END_PHRASES[pick(len(END_PHRASES))]},
            lambda p: f'End your answer with the exact phrase "{p["phrase"]}", with nothing after it.',
            lambda t, p: (t.rstrip().endswith(p["phrase"]), f"ends with {t.rstrip()[-40:]!r}"),
        ),
        Kind(
            "no_commas",
            lambda pick: {},
            lambda p: "Do not use any commas in your answer.",
            lambda t, p: ("," not in t, f"{t.count(',')} commas"),
        ),
        Kind(
            "quotation",
            lambda pick: {},
            lambda p: "Wrap your entire answer in double quotation marks.",
            lambda t, p: (
                len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"',
                "quoted" if t.strip()[:1] == '"' else "not quoted",
            ),
        ),
        Kind(
            "language",
            lambda pick: {"language": LANGUAGES[pick(len(LANGUAGES))]},
            lambda p: f"Your entire answer must be in {language_name(p['language'])}, no other language.",
            _language,
        ),
        Kind(
            "placeholders",
            lambda pick: {"n": 1 + pick(3)},
            lambda p: f"Include at least {p['n']} placeholders in square brackets, like [address].",
            lambda t, p: _count(len(_PLACEHOLDER.findall(t)), "at least", p["n"], "placeholders"),
        ),
        Kind(
            "postscript",
            lambda pick: {},
            lambda p: "At the end of your answer, add a postscript starting with P.S.",
            lambda t, p: _postscript(t),
        ),
        Kind(
            "highlights",
            lambda pick: {"n": 1 + pick(3)},
            lambda p: f"Highlight at least {p['n']} sections with markdown, i.e. *highlighted section*.",
            lambda t, p: _count(len(_HIGHLIGHT.findall(t)), "at least", p["n"], "highlighted sections"),
        ),
    ]
}
# Never drawn together: they cannot all hold (or one makes the other meaningless).
CONFLICTS = [
    {"lowercase", "uppercase"},
    {"max_words", "min_words"},
    {"json_format", "paragraphs", "bullets", "title", "end_phrase", "postscript", "quotation", "highlights"},
    {"language", "include_keywords", "keyword_frequency", "exclude_keyword"},
    {"max_sentences", "min_words"},
    {"max_sentences", "bullets", "paragraphs"},
]


@dataclass(frozen=True)
class Constraint:
    kind: str
    params: dict[str, Any]

    def describe(self) -> str:
        return KINDS[self.kind].says(self.params)

    def check(self, response: str) -> tuple[bool, str]:
        return KINDS[self.kind].check(response, self.params)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}


def draw(key: str, seed: int | str, n: int, kinds: list[str] | None = None) -> list[Constraint]:
    """``n`` compatible constraints for ``key`` (a persona id), the same for the same key and seed."""
    allowed = [k for k in (kinds or list(KINDS)) if k in KINDS]
    unknown = sorted(set(kinds or []) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown constraint kinds {unknown}; the registry has {sorted(KINDS)}")
    order = sorted(allowed, key=lambda k: digest("constraint", seed, key, k))
    chosen: list[str] = []
    for k in order:
        if len(chosen) == n:
            break
        if not any(k in group and set(chosen) & (group - {k}) for group in CONFLICTS):
            chosen.append(k)
    return [Constraint(k, KINDS[k].draw(_picker(digest("params", seed, key, k)))) for k in chosen]


def _picker(seed_hex: str) -> Callable[[int], int]:
    """A small deterministic stream of choices (a linear congruential generator over the hash)."""
    state = int(seed_hex[:12], 16)

    def pick(m: int) -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) % m

    return pick


def check_all(response: str, constraints: list[Constraint]) -> list[tuple[Constraint, bool, str]]:
    return [(c, *c.check(response)) for c in constraints]
