"""Our checkers against the reference's own code (IFEval's and IFBench's checkers as ``if-verifiable`` ships
them, judged strict and loose as IFEval's ``evaluation_lib`` judges): the registry names the reference's ids,
its conflict table holds IFEval's, and on thousands of answers of the kinds models write, every kind with
drawn arguments gets the reference's verdict, strict and loose."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from personahub_dagster.core.instructions import CONFLICTS, KINDS, draw, witness
from tests.support.if_answers import REQUEST, answers
from tests.support.reference_if import disagreements, reference

N_ANSWERS = 2000


@pytest.fixture(scope="module")
def ref():
    logging.getLogger().setLevel(logging.CRITICAL)  # IFEval logs every text langdetect finds nothing in
    return reference()


def test_every_kind_is_a_reference_instruction_and_ifeval_is_whole(ref):
    families = {k.family for k in KINDS.values()}
    assert families == {"ifeval", "ifbench"} and len(KINDS) >= 40
    for kind in KINDS.values():
        assert kind.id in ref[kind.family], kind.id
    assert {k.id for k in KINDS.values() if k.family == "ifeval"} == set(ref["ifeval"])  # all 25
    assert len([k for k in KINDS.values() if k.family == "ifbench"]) >= 15


def test_the_conflict_table_holds_ifevals(ref):
    missing = [
        (a, b)
        for a, others in ref["conflicts"].items()
        for b in others
        if a in KINDS and b in KINDS and b not in CONFLICTS[a]
    ]
    assert missing == []


def test_every_verdict_agrees_with_the_reference_strict_and_loose():
    texts = answers(N_ANSWERS, seed=0)
    texts += [w for i in range(150) if (w := witness(draw(f"w-{i}", 3, 1 + i % 3, REQUEST)))]
    halves = [texts[0::2], texts[1::2]]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(disagreements, halves, [0, 1], [REQUEST, REQUEST]))
    n, found = sum(d[0] for d in done), [f for d in done for f in d[1]]
    print(
        f"\n{len(texts)} answers × {len(KINDS)} kinds: {n} verdicts, strict and loose; "
        f"{n - len(found)} agree with the reference"
    )
    assert n == len(texts) * len(KINDS) and found == []
