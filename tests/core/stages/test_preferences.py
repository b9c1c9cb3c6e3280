"""Judged preference pairs: a second answer to each row's own prompt, a judge picking by a rubric with the
answers in a seeded order — the better answer is chosen wherever it was shown — and what the judge does not
decide, or a second answer that adds nothing, is a reject with its reason."""

from __future__ import annotations

import re

import polars as pl
import pytest

from personahub_dagster.core.stages.preferences import judged_pairs, verdict
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

FITS = "Math problem: A beekeeper has 12 hives of 3,000 bees each. How many bees does she keep?"
GENERIC = "Math problem: A shop sells 12 boxes a day for 5 days. How many boxes does it sell?"


def rows(n: int, own: str) -> pl.DataFrame:
    persona = "A beekeeper who sells honey at the market."
    return pl.DataFrame(
        {
            "row_id": [f"g-{i:020d}" for i in range(n)],
            "data_type": ["math_problem"] * n,
            "prompt": [
                f"Persona: {persona}\n\nWrite one math word problem (row {i}).\nMath problem:"
                for i in range(n)
            ],
            "output": [own] * n,
            "constraints": ["{}"] * n,
            "persona": [persona] * n,
            "persona_id": ["p-1"] * n,
            "source_text_id": ["t-1"] * n,
        }
    )


def model(second: str):
    def reply(_n: int, body: dict) -> tuple[str, str]:
        system, text = body["messages"][0]["content"], body["messages"][-1]["content"]
        if system.startswith("You are a strict, fair judge"):
            a = re.search(r'Answer A:\n"""\n(.*?)\n"""', text, re.S).group(1)
            return (
                "ok",
                f"Better: {'A' if 'beekeeper' in a else 'B'}\nReason: (2) it fits the beekeeper's work.",
            )
        return "ok", second

    return reply


def run(make_gateway, server, frame):
    gateway = make_gateway(server)
    return judged_pairs(
        frame,
        gateway,
        gateway,
        {"math_problem": load_prompt("math_problem")},
        load_prompt("pair_judge"),
        partition="p",
    )


def test_the_better_answer_is_chosen_wherever_it_was_shown(make_gateway):
    with FakeOpenAI(model(FITS)) as server:
        out = run(make_gateway, server, rows(12, GENERIC))
    assert out.pairs.height == 12 and out.rejects.is_empty()
    assert set(out.pairs["chosen"]) == {FITS} and set(out.pairs["rejected"]) == {GENERIC}
    assert out.pairs["chosen_row_id"].is_null().all() and out.pairs["rejected_row_id"].is_not_null().all()
    assert set(out.pairs["reason"]) == {"(2) it fits the beekeeper's work."} and set(out.pairs["judge"]) == {
        "openai/fake"
    }
    judged = [r for r in server.requests if r["messages"][0]["content"].startswith("You are a strict")]
    firsts = {
        re.search(r'Answer A:\n"""\n(.*?)\n"""', r["messages"][-1]["content"], re.S).group(1) for r in judged
    }
    assert firsts == {FITS, GENERIC}  # both orders were shown


def test_what_adds_nothing_or_is_not_decided_is_a_reject(make_gateway):
    with FakeOpenAI(model(GENERIC)) as server:  # the second answer is the first again
        out = run(make_gateway, server, rows(2, GENERIC))
    assert out.pairs.is_empty() and set(out.rejects["reason"]) == {"same_answer"}
    undecided = lambda _n, b: ("ok", "Both are fine." if "judge" in b["messages"][0]["content"] else FITS)  # noqa: E731
    with FakeOpenAI(undecided) as server:
        out = run(make_gateway, server, rows(2, GENERIC).with_columns(pl.col("prompt") + " again"))
    assert out.pairs.is_empty() and set(out.rejects["reason"]) == {"no_verdict"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Better: B\nReason: correct.", ("B", "correct.")),
        ("**Better:** answer a", ("A", "")),
        ("A tie.", (None, None)),
    ],
)
def test_verdicts(raw, expected):
    assert verdict(raw) == expected
