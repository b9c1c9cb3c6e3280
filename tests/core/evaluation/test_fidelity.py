"""Persona fidelity tells a generator that writes for its persona from one that ignores it: retrieval far
above chance and a positive lift for the first, chance and no lift for the second (the real embedder;
the two generators are scripted so that the truth is known)."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from personahub_dagster.core.evaluation.fidelity import (
    NEUTRAL_PERSONA,
    FidelityConfig,
    day_fidelity,
    distinct_n,
    vendi_score,
)
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

JOBS = [
    ("beekeeper", "hives of bees and jars of honey"),
    ("pilot", "flights, runways and litres of jet fuel"),
    ("baker", "loaves of sourdough and kilos of flour"),
    ("welder", "steel beams and welding rods"),
    ("nurse", "patients, night shifts and doses of medicine"),
    ("farmer", "hectares of wheat and tractors"),
    ("violinist", "concerts, strings and rehearsal hours"),
    ("chemist", "beakers, reagents and millilitres of acid"),
    ("librarian", "shelves of books and overdue loans"),
    ("fisher", "nets, boats and crates of cod"),
    ("carpenter", "planks of oak and boxes of nails"),
    ("accountant", "invoices, ledgers and tax returns"),
]
GENERIC = "Math problem: A shop sells 12 items a day for 5 days. How many items does it sell in all?"


def persona(i: int) -> str:
    return f"A {JOBS[i % len(JOBS)][0]} who has worked in town number {i} for many years."


def faithful(text: str) -> str:
    """A problem about the persona's work; a generic one for the neutral persona."""
    found = re.search(r"Persona: A (\w+)", text)
    job = next((j for j in JOBS if found and j[0] == found.group(1)), None)
    if job is None or NEUTRAL_PERSONA in text:
        return GENERIC
    return f"Math problem: A {job[0]} counts {job[1]}: 12 on Monday and 30 on Friday. How many in all?"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def hub(embedder) -> tuple[pl.DataFrame, np.ndarray]:
    texts = [persona(i) for i in range(60)]
    sample = pl.DataFrame({"persona_id": [f"p-{i:03d}" for i in range(60)], "persona": texts})
    return sample, embedder.encode(texts)


def generations(outputs: list[str]) -> pl.DataFrame:
    n = len(outputs)
    return pl.DataFrame(
        {
            "row_id": [f"g-{i:03d}" for i in range(n)],
            "data_type": ["math_problem"] * n,
            "prompting_mode": ["zero_shot"] * n,
            "constraints": ["{}"] * n,
            "persona_id": [f"p-{i:03d}" for i in range(n)],
            "prompt": [
                f"Persona: {persona(i)}\n\nWrite one math word problem.\nMath problem:" for i in range(n)
            ],
            "output": outputs,
        }
    )


def run(hub, embedder, make_gateway, outputs: list[str], reply) -> dict[str, float]:
    sample, vectors = hub
    with FakeOpenAI(lambda _n, body: ("ok", reply(body["messages"][-1]["content"]))) as server:
        out, unmatched = day_fidelity(
            generations(outputs),
            sample,
            sample,
            vectors,
            embedder,
            make_gateway(server),
            {"math_problem": load_prompt("math_problem")},
            FidelityConfig(sample_rows=40, candidates=10, lift_rows=12, seed=3),
            "2026-01-01",
        )
    assert unmatched == 0 and out.rejects.is_empty()
    return dict(zip(out.rows["metric"], out.rows["value"], strict=True)) | {
        f"{m}_baseline": b for m, b in zip(out.rows["metric"], out.rows["baseline"], strict=True)
    }


def test_a_generator_that_writes_for_its_persona(hub, embedder, make_gateway):
    outputs = [faithful(f"Persona: {persona(i)}") for i in range(40)]
    got = run(hub, embedder, make_gateway, outputs, faithful)
    assert got["retrieval_top1_baseline"] == pytest.approx(0.1)
    assert got["retrieval_top1"] >= 0.6  # its own persona out of 10, six times chance or better
    assert got["persona_lift"] > 0.1 and got["distant_gap"] > 0.1
    assert got["vendi"] > 3  # twelve jobs, one template: a few distinct outputs; identical ones give 1


def test_a_generator_that_ignores_its_persona(hub, embedder, make_gateway):
    got = run(hub, embedder, make_gateway, [GENERIC] * 40, lambda _text: GENERIC)
    assert got["retrieval_top1"] <= 0.3  # chance, give or take (identical outputs: ties lose)
    assert abs(got["persona_lift"]) < 1e-4 and abs(got["distant_gap"]) < 1e-4
    assert got["vendi"] == pytest.approx(1.0, abs=1e-3)


def test_diversity_measures():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b", "a b"], 2) == 0.5
    assert vendi_score(np.eye(4, dtype=np.float32)) == pytest.approx(4.0)
    assert vendi_score(np.ones((3, 2), np.float32) / np.sqrt(2)) == pytest.approx(1.0)
