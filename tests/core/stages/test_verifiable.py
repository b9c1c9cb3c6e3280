"""Verifiable instructions against a scripted model: every answer's verdict per constraint, the answer
that meets them all a row, the one that misses a reject naming what it missed, the two a preference pair
judged by the checker — and the pair walks back to its persona and source text."""

from __future__ import annotations

import json

import polars as pl

from personahub_dagster.core.stages.prompts import load_prompt
from personahub_dagster.core.stages.verifiable import DATA_TYPE, verifiable_instructions
from tests.support.fake_openai import FakeOpenAI

TASK = (
    "Can you help me plan the night-shift rota for the ward next month so nobody works three nights in a row?"
)
GOOD = "start with a grid of the nurses and the nights then fill the weekends first and check each row."
BAD = "Start with a grid, then fill it in. Check each row, twice."


def scripted(_n: int, body: dict) -> tuple[str, str]:
    system = body["messages"][0]["content"]
    if system.startswith("You imagine what real people ask"):
        return "ok", TASK
    return "ok", GOOD if body["temperature"] < 0.5 else BAD


def test_answers_checked_by_code_become_rows_rejects_and_pairs(chain_lake, make_gateway):
    lake, ids = chain_lake
    personas = lake.read("personas")
    with FakeOpenAI(scripted) as server:
        out = verifiable_instructions(
            personas,
            make_gateway(server),
            load_prompt("instruction"),
            load_prompt("assistant_response"),
            partition="p",
            constraints=(2, 2),
            kinds=["punctuation:no_comma", "change_case:english_lowercase"],
        )
    n = personas.height
    assert (
        out.rows.height == n
        and set(out.rows["output"]) == {GOOD}
        and set(out.rows["data_type"]) == {DATA_TYPE}
    )
    prompt = out.rows["prompt"][0]
    assert prompt.startswith(TASK) and "commas" in prompt and "lowercase" in prompt
    stored = json.loads(out.rows["constraints"][0])
    assert {c["id"] for c in stored} == {"punctuation:no_comma", "change_case:english_lowercase"}
    assert {c["family"] for c in stored} == {"ifeval"} and all(c["kwargs"] == {} for c in stored)
    # every answer (two a persona) judged on both constraints
    assert out.checks.height == n * 2 * 2
    bad = out.checks.filter(~pl.col("passed"))
    assert set(bad["constraint"]) == {"punctuation:no_comma", "change_case:english_lowercase"}
    assert set(bad["detail"]) == {"not followed"} and not bad["loose"].any()
    assert (
        out.rejects["reason"].to_list()
        == ["constraint_failed: change_case:english_lowercase, punctuation:no_comma"] * n
    )
    assert out.pairs.height == n
    pair = out.pairs.row(0, named=True)
    assert (pair["chosen"], pair["rejected"], pair["judge"]) == (GOOD, BAD, "checker")
    assert "meets all 2" in pair["reason"] and pair["chosen_row_id"] in set(out.rows["row_id"])
    assert pair["rejected_row_id"] is None and pair["prompt"] == prompt

    lake.write_many(
        {"generations": out.rows, "constraint_checks": out.checks, "preference_pairs": out.pairs},
        producer="verifiable_instructions",
        partition="p",
    )
    chain = lake.lineage(pair["pair_id"])
    assert chain[0].kind == "pair" and chain[0].detail["judge"] == "checker"
    assert chain[1].id == pair["persona_id"] and chain[-1].kind == "text" and chain[-1].id == ids["text"]


def test_answers_that_meet_the_same_constraints_make_no_pair(chain_lake, make_gateway):
    lake, _ = chain_lake
    with FakeOpenAI(
        lambda _n, b: ("ok", TASK if "real people" in b["messages"][0]["content"] else GOOD)
    ) as server:
        out = verifiable_instructions(
            lake.read("personas"),
            make_gateway(server),
            load_prompt("instruction"),
            load_prompt("assistant_response"),
            partition="p",
            constraints=(1, 1),
            kinds=["punctuation:no_comma"],
        )
    assert (
        out.pairs.is_empty()
        and out.rejects.is_empty()
        and out.rows.height == 2 * lake.read("personas").height
    )
