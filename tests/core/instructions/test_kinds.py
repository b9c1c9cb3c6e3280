"""Each kind on its own: an instruction sentence, a witness that passes (ours and the reference's
checker, strict and loose), and an answer that fails it (ours and the reference's agreeing), with
arguments as drawn."""

from __future__ import annotations

import logging

import pytest

from personahub_dagster.core.instructions import KINDS, Constraint, draw, witness
from tests.support.if_answers import FRAGMENTS, REQUEST
from tests.support.reference_if import reference, verdicts

FAILING_POOL = ["", *FRAGMENTS, "\n\n".join(FRAGMENTS[:12]), " ".join(FRAGMENTS).upper()]


@pytest.fixture(scope="module", autouse=True)
def _ref():
    logging.getLogger().setLevel(logging.CRITICAL)
    reference()


@pytest.mark.parametrize("kind_id", sorted(KINDS))
def test_each_kind_passes_its_witness_and_fails_an_answer(kind_id):
    [c] = draw("one-kind", 0, 1, REQUEST, kinds=[kind_id])
    assert c.describe() and c.to_json()["id"] == kind_id
    good = witness([c])
    assert c.check(good) and c.check_loose(good)
    assert verdicts(c.kind.family, good, [kind_id], [c.args], REQUEST) == [(True, True)]
    bad = next((t for t in FAILING_POOL if not Constraint(kind_id, c.args).check(t)), None)
    assert bad is not None, f"no answer in the pool fails {kind_id}"
    assert verdicts(c.kind.family, bad, [kind_id], [c.args], REQUEST)[0][0] is False


def test_the_docs_list_the_registry_as_it_is():
    from pathlib import Path

    from personahub_dagster.core.instructions.catalog import catalog

    page = (Path(__file__).resolve().parents[3] / "docs" / "instructions.md").read_text()
    assert page.endswith("## The registry\n\n" + catalog()), "regenerate docs/instructions.md's registry"
