"""Satisfiable by construction: ten thousand drawn sets, across seeds, sizes and both families, each with an
answer that meets every constraint of it — the proof that the conflict table excludes every set no answer can
meet — and a sample of those answers passing the reference's own checkers too. Draws are seeded, never
inside a conflict, and refuse what the registry does not have."""

from __future__ import annotations

import itertools
import logging

import pytest

from personahub_dagster.core.instructions import CONFLICTS, KINDS, Constraint, draw, witness
from tests.support.if_answers import REQUEST
from tests.support.reference_if import reference, verdicts

DRAWS = [(f"persona-{i}", seed, size) for i, seed, size in itertools.product(range(840), range(4), (1, 2, 3))]


def test_ten_thousand_draws_each_have_a_witness():
    assert len(DRAWS) >= 10_000
    without = []
    for key, seed, size in DRAWS:
        chosen = draw(key, seed, size, REQUEST)
        ids = [c.id for c in chosen]
        assert 1 <= len(ids) <= size and not any(set(ids) & (CONFLICTS[i] - {i}) for i in ids), ids
        if witness(chosen) is None:
            without.append(ids)
    assert without == []


def test_witnesses_pass_the_reference_checkers():
    logging.getLogger().setLevel(logging.CRITICAL)
    reference()
    for key, seed, size in DRAWS[::40]:
        chosen = draw(key, seed, size, REQUEST)
        answer = witness(chosen)
        ids, args = [c.id for c in chosen], [c.args for c in chosen]
        got = verdicts(chosen[0].kind.family, answer, ids, args, REQUEST)
        assert all(strict for strict, _ in got), (chosen, answer)


def test_every_kind_alone_has_a_witness():
    for kind_id in KINDS:
        [c] = draw("solo", 0, 1, REQUEST, kinds=[kind_id])
        assert c.id == kind_id and witness([c]) is not None, kind_id


def test_draws_are_seeded_and_refuse_the_unknown():
    first = draw("p-1", 0, 3, REQUEST)
    assert first == draw("p-1", 0, 3, REQUEST)
    assert any(draw(f"p-{i}", 0, 3, REQUEST) != first for i in range(2, 10))
    only = {c.kind.family for i in range(40) for c in draw(f"p-{i}", 0, 2, REQUEST, families=["ifbench"])}
    assert only == {"ifbench"}
    both = {c.kind.family for i in range(40) for c in draw(f"p-{i}", 0, 2, REQUEST)}
    assert both == {"ifeval", "ifbench"}
    assert all(len({c.kind.family for c in draw(f"p-{i}", 1, 3, REQUEST)}) == 1 for i in range(60))
    asked = ["punctuation:no_comma", "detectable_format:title"]
    assert {c.id for c in draw("p-1", 0, 2, REQUEST, kinds=asked)} == set(asked)
    with pytest.raises(ValueError, match="unknown constraint kinds"):
        draw("p-1", 0, 1, REQUEST, kinds=["telepathy"])
    with pytest.raises(ValueError, match="unknown constraint families"):
        draw("p-1", 0, 1, REQUEST, families=["ifeval", "tarot"])
    with pytest.raises(ValueError, match="unknown instruction id"):
        Constraint.from_json({"id": "telepathy", "kwargs": {}})
