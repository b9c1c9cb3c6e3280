"""Synthesis against a scripted fake provider: every request ends as a row or a reject with its reason,
persona-enhanced exemplars get their personas from Text-to-Persona (cached), the agreement filter."""

from __future__ import annotations

import json

import polars as pl
import pytest

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.stages.data_types import load_data_types
from personahub_dagster.core.stages.math_check import Solver, check_problems
from personahub_dagster.core.stages.prompts import load_exemplars, load_prompt
from personahub_dagster.core.stages.synthesis import exemplar_personas, select_personas, synthesize
from tests.support.fake_openai import FakeOpenAI

TYPES = load_data_types()
MATH = TYPES["math_problem"]
PROBLEM = "Math problem: A nurse gives 15 mg/kg to a child of {n} kg twice a day. How much per week?"


def hub(n: int = 6) -> pl.DataFrame:
    return rows_frame(
        "hub",
        [
            {
                "persona_id": f"p-{i:02d}",
                "persona": f"A pediatric nurse number {i} who works night shifts in a city hospital.",
                "method": "text",
                "hop": 0,
                "source_text_id": f"t-{i:02d}",
                "dup_of": "p-00" if i == n - 1 else None,
                "partition": "2026-11-0" + str(1 + i % 2),
                "created_at": now_utc(),
            }
            for i in range(n)
        ],
    )


def test_selection_is_deterministic_skips_duplicates_and_filters_partitions():
    h = hub()
    first = select_personas(h, 3, seed=1)["persona_id"].to_list()
    assert first == select_personas(h.reverse(), 3, seed=1)["persona_id"].to_list()
    assert "p-05" not in select_personas(h, None)["persona_id"].to_list()
    orders = {tuple(select_personas(h, None, seed=s)["persona_id"]) for s in range(8)}
    assert len(orders) > 1  # the seed changes the sample
    only = select_personas(h, None, partitions=["2026-11-01"])
    assert set(only["partition"]) == {"2026-11-01"} and only.height == 3


def script_by_mode(_n: int, body: dict):
    """zero-shot: a good problem; few-shot: copies the first exemplar; persona few-shot: cut off."""
    prompt = body["messages"][-1]["content"]
    if "each written for a persona" in prompt:
        return "length", PROBLEM.format(n=len(prompt)) + " And then"
    if "Examples of" in prompt:
        return "ok", load_exemplars("math_problem")[0]["output"]
    return "ok", PROBLEM.format(n=len(prompt))


def test_every_request_is_a_row_or_a_reject_with_its_reason(make_gateway):
    examples = [dict(ex, persona="A pharmacist.") for ex in load_exemplars("math_problem")]
    with FakeOpenAI(script_by_mode) as server:
        out = synthesize(
            select_personas(hub(), 4),
            make_gateway(server),
            MATH,
            load_prompt("math_problem"),
            exemplars={"few_shot": examples, "persona_few_shot": examples},
            partition="p",
            stage="math_problems",
        )
    assert out.rows.height + out.rejects.height == 4 * 3 == len(server.requests)
    assert set(out.rows["prompting_mode"]) == {"zero_shot"}
    assert dict(out.rejects.group_by("reason").len().iter_rows()) == {"copies_exemplar": 4, "truncated": 4}
    assert set(out.rows["description"]) == {"math problem"}
    assert json.loads(out.rows["constraints"][0]) == {"difficulty": "challenging"}
    assert out.rows["row_id"].n_unique() == 4 and out.rows["source_text_id"].str.starts_with("t-").all()


def test_knowledge_texts_cut_by_the_token_limit_are_trimmed_to_a_sentence(make_gateway):
    article = (
        "Title: Night shifts\nNurses who work nights sleep in the day, often in two blocks. Dark curtains, "
        "a cool room and a fixed schedule help. Caffeine early in the shift keeps them alert, but not in "
        "the last four hours. Meals at regular times keep digestion steady. They also"
    )
    with FakeOpenAI(lambda n, b: ("length", article)) as server:
        out = synthesize(
            select_personas(hub(), 1),
            make_gateway(server),
            TYPES["knowledge_text"],
            load_prompt("knowledge_text"),
            modes=["zero_shot"],
            partition="p",
            stage="knowledge_texts",
        )
    assert out.rows["output"][0].endswith("keep digestion steady.")


def test_constraints_reach_the_prompt_and_the_row(make_gateway):
    with FakeOpenAI(lambda n, b: ("ok", PROBLEM.format(n=n))) as server:
        out = synthesize(
            select_personas(hub(), 1),
            make_gateway(server),
            MATH,
            load_prompt("math_problem"),
            modes=["zero_shot"],
            variables={"focus": "geometry", "difficulty": "Olympiad-level"},
            partition="p",
            stage="math_problems",
        )
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "Write one Olympiad-level math word problem about geometry" in prompt
    assert json.loads(out.rows["constraints"][0]) == {"difficulty": "Olympiad-level", "focus": "geometry"}


def test_a_few_shot_mode_without_exemplars_is_a_clear_error(make_gateway):
    with FakeOpenAI() as server, pytest.raises(ValueError, match="needs exemplars"):
        synthesize(
            hub(),
            make_gateway(server),
            MATH,
            load_prompt("math_problem"),
            modes=["few_shot"],
            partition="p",
            stage="s",
        )


def test_exemplar_personas_come_from_text_to_persona_once(make_gateway):
    def t2p(n, body):
        if "Math problem: A parabolic" in body["messages"][-1]["content"]:
            return "ok", "I cannot help with that."
        return "ok", f"A structural engineer number {n} who designs footbridges for coastal towns."

    exemplars = load_exemplars("math_problem")
    with FakeOpenAI(t2p) as server:
        gw = make_gateway(server)
        args = {"partition": "p", "stage": "math_problems.exemplars"}
        found, rejects = exemplar_personas(exemplars, gw, load_prompt("text_to_persona"), **args)
        again, _ = exemplar_personas(exemplars, gw, load_prompt("text_to_persona"), **args)
    assert len(server.requests) == len(exemplars)  # the second pass is answered by the cache
    assert found == again and len(found) == len(exemplars) - 1
    assert all(ex["persona"].startswith("A structural engineer") for ex in found)
    assert "likely to have written" in server.requests[0]["messages"][-1]["content"]
    assert rejects["reason"].to_list() == ["refusal"]


def problems(n: int = 3) -> pl.DataFrame:
    return rows_frame(
        "generations",
        [
            dict(row_id=f"g-{i}", persona_id=f"p-{i}", source_text_id=f"t-{i}", output=PROBLEM.format(n=i))
            for i in range(n)
        ],
    )


def test_agreement_filter_keeps_problems_whose_answers_agree(make_gateway):
    answers = {  # (solver, problem) → final line
        ("step", "g-0"): "so 3/4 of it. Final answer: \\boxed{\\frac{3}{4}}",
        ("direct", "g-0"): "Final answer: \\boxed{0.75}",
        ("step", "g-1"): "Final answer: \\boxed{12}",
        ("direct", "g-1"): "Final answer: \\boxed{13}",
        ("step", "g-2"): "Final answer: \\boxed{7}",
        ("direct", "g-2"): "I am not sure.",
    }

    def script(_n, body):
        prompt = body["messages"][-1]["content"]
        solver = "step" if "step by step" in prompt else "direct"
        problem = next(f"g-{i}" for i in range(3) if PROBLEM.format(n=i) in prompt)
        return "ok", answers[(solver, problem)]

    with FakeOpenAI(script) as server:
        gw = make_gateway(server)
        out = check_problems(
            problems(),
            [Solver("step", "step_by_step", gw), Solver("direct", "direct", gw)],
            load_prompt("math_solution"),
            partition="p",
            stage="math_checks",
        )
    rows = {r["row_id"]: r for r in out.rows.iter_rows(named=True)}
    assert rows["g-0"]["agreement"] and rows["g-0"]["agreeing"] == 2
    assert rows["g-0"]["answer"] == "\\frac{3}{4}"
    assert not rows["g-1"]["agreement"] and rows["g-1"]["agreeing"] == 1 and rows["g-1"]["answer"] is None
    assert not rows["g-2"]["agreement"] and rows["g-2"]["n_solutions"] == 1
    assert out.rejects["reason"].to_list() == ["no_final_answer"]
    solutions = json.loads(rows["g-1"]["solutions"])
    assert [s["solver"] for s in solutions] == ["step", "direct"] and solutions[1]["answer"] == "13"


def test_unknown_solution_style_is_a_clear_error(make_gateway):
    with FakeOpenAI() as server, pytest.raises(ValueError, match="unknown solution styles"):
        check_problems(
            problems(1),
            [Solver("x", "telepathy", make_gateway(server))],
            load_prompt("math_solution"),
            partition="p",
            stage="s",
        )
