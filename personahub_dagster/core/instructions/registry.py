"""The registry: every constraint kind by its reference id, the families they come from, the sets never drawn
together, seeded draws, strict and loose verdicts, and witnesses.

A constraint is stored as the reference stores it — an instruction id and its keyword arguments — so one
verifier serves our data and the benchmark: :func:`ground_truth` writes a row's constraints as open-instruct's
RLVR data carries them, and IFEval's or IFBench's own checkers re-check it from that alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import personahub_dagster.core.instructions.ifbench as ifbench
import personahub_dagster.core.instructions.ifeval as ifeval
from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.instructions.draft import Draft
from personahub_dagster.core.instructions.kind import Kind

KINDS: dict[str, Kind] = {k.id: k for k in [*ifeval.KINDS, *ifbench.KINDS]}
FAMILIES = ("ifeval", "ifbench")


def _symmetric(*tables: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    """IFEval's ``conflict_make``: if A conflicts with B, B conflicts with A; every kind with itself."""
    out: dict[str, set[str]] = {k: {k} for k in KINDS}
    for table in tables:
        for a, others in table.items():
            for b in others:
                out[a].add(b)
                out[b].add(a)
    return {k: frozenset(v) for k, v in out.items()}


# Beyond IFEval's table: the pairs no answer meets together (found by tests/core/instructions/test_witness.py)
# and the pairs IFBench's kinds make impossible.
OWN_CONFLICTS: dict[str, set[str]] = {
    # "Section 1" cannot be written in lowercase, nor "Section" in capitals; each SECTION is a capital word
    "detectable_format:multiple_sections": {
        "change_case:english_lowercase",
        "change_case:english_capital",
        "change_case:capital_word_frequency",
    },
    # seven repeats of one keyword, or the keyword twice, against a cap on repeats
    "words:repeats": {"count:keywords_multiple", "words:words_position"},
    # a section marker opens its paragraph, so that paragraph cannot open with the word asked
    "length_constraints:nth_paragraph_first_word": {"detectable_format:multiple_sections"},
    # the keyword asked in a sentence changes the counts asked of the keywords
    "sentence:keyword": {"count:keywords_multiple"},
    "words:words_position": {"count:keywords_multiple"},
    # a section per sentence at least, against fewer sentences than sections; and, as IFEval's table says
    # of *** paragraphs, a paragraph count against a sentence count
    "length_constraints:number_sentences": {
        "detectable_format:multiple_sections",
        "length_constraints:nth_paragraph_first_word",
    },
    # more unique words than the range allows words
    "count:unique_word_count": {"count:word_count_range"},
    # the bullets must close the answer; the keyword must be its second to last word
    "format:no_bullets_bullets": {"words:words_position", "format:sub-bullets"},
    # title case capitalises the keyword, the <i> tag and SEPARATOR's other letters
    "format:title_case": {"words:words_position", "format:thesis", "format:list"},
}
CONFLICTS = _symmetric(ifeval.CONFLICTS, ifbench.CONFLICTS, OWN_CONFLICTS)


@dataclass(frozen=True)
class Constraint:
    id: str
    args: dict[str, Any]

    @property
    def kind(self) -> Kind:
        return KINDS[self.id]

    def describe(self) -> str:
        return self.kind.says(self.args)

    def check(self, response: str) -> bool:
        """IFEval's strict verdict: the response as it is (an empty one fails)."""
        return bool(response.strip()) and self.kind.check(response, self.args)

    def check_loose(self, response: str) -> bool:
        """IFEval's loose verdict: the response, or it without its first line, last line or both, each with
        and without markdown asterisks — any of them, non-empty, that passes."""
        return any(v.strip() and self.kind.check(v, self.args) for v in loose_variants(response))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "family": self.kind.family, "kwargs": self.args}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Constraint:
        if data.get("id") not in KINDS:
            raise ValueError(f"unknown instruction id {data.get('id')!r}")
        return cls(data["id"], dict(data.get("kwargs") or {}))


def loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def kinds_of(families: Sequence[str] = FAMILIES, kinds: Sequence[str] | None = None) -> list[str]:
    unknown_families = sorted(set(families) - set(FAMILIES))
    if unknown_families:
        raise ValueError(f"unknown constraint families {unknown_families}; there are {list(FAMILIES)}")
    unknown = sorted(set(kinds or []) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown constraint kinds {unknown}; the registry has {sorted(KINDS)}")
    return [k for k in (kinds or KINDS) if KINDS[k].family in families]


def draw(
    key: str,
    seed: int | str,
    n: int,
    request: str = "",
    *,
    families: Sequence[str] = FAMILIES,
    kinds: Sequence[str] | None = None,
) -> list[Constraint]:
    """``n`` compatible constraints for ``key`` (a persona id) from one family, the same for the same key,
    seed and request. A family is picked per key, so a row is IFEval's or IFBench's, never a mix."""
    allowed = kinds_of(families, kinds)
    present = [f for f in FAMILIES if any(KINDS[k].family == f for k in allowed)]
    if not present:
        raise ValueError("no constraint kind left to draw from")
    family = present[int(digest("family", seed, key)[:8], 16) % len(present)]
    order = sorted(
        (k for k in allowed if KINDS[k].family == family), key=lambda k: digest("constraint", seed, key, k)
    )
    chosen: list[str] = []
    for k in order:
        if len(chosen) == n:
            break
        if not CONFLICTS[k] & set(chosen):
            chosen.append(k)
    return [Constraint(k, KINDS[k].draw(_picker(digest("args", seed, key, k)), request)) for k in chosen]


def _picker(seed_hex: str) -> Callable[[int], int]:
    """A small deterministic stream of choices (a linear congruential generator over the hash)."""
    state = int(seed_hex[:12], 16)

    def pick(m: int) -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (state >> 33) % m

    return pick


@dataclass(frozen=True)
class Verdict:
    constraint: Constraint
    strict: bool
    loose: bool


def check_all(response: str, constraints: list[Constraint]) -> list[Verdict]:
    return [Verdict(c, c.check(response), c.check_loose(response)) for c in constraints]


def witness(constraints: list[Constraint], rounds: int = 120) -> str | None:
    """The shortest answer this builder finds that passes every constraint (strict), or None."""
    draft = Draft(unique=any(c.kind.family == "ifbench" for c in constraints))
    for c in constraints:
        if c.id in ifeval.LANGUAGE_KINDS:
            c.kind.shape(draft, c.args)
    for c in constraints:
        if c.id not in ifeval.LANGUAGE_KINDS:
            c.kind.shape(draft, c.args)
    for _ in range(rounds):
        answer = draft.render()
        failing = [c for c in constraints if not c.check(answer)]
        if not failing:
            return answer
        if not any(c.kind.grow and c.kind.grow(draft, c.args, answer) for c in failing):
            return None
    return None


def ground_truth(constraints: list[Constraint]) -> str:
    """open-instruct's RLVR label: a list holding one ``{"instruction_id": [...], "kwargs": [...]}``, as JSON
    (no nulls, so ``ast.literal_eval`` reads it as well as ``json.loads``)."""
    return json.dumps(
        [{"instruction_id": [c.id for c in constraints], "kwargs": [c.args for c in constraints]}]
    )


def dataset_of(constraints: list[Constraint]) -> str:
    """The verifier a trainer routes the row to: ``ifeval`` or ``ifbench``."""
    return constraints[0].kind.family if constraints else "ifeval"
