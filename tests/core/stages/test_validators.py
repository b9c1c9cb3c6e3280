"""Validators of synthesized data: good outputs pass cleaned, each kind of bad output gets its reason."""

from __future__ import annotations

import json

import pytest

from personahub_dagster.core.stages.data_types import load_data_types
from personahub_dagster.core.stages.validators import build_validator, repetitive

TYPES = load_data_types()


def validate(data_type: str, raw: str | None):
    return TYPES[data_type].validator()(raw)


def test_math_problem_gets_its_label_and_loses_a_preamble():
    good = (
        "Sure! Here it is.\n\n**Math problem:** A baker sells 120 loaves a day at $3 each. "
        "What is the weekly revenue?"
    )
    text, reason = validate("math_problem", good)
    assert reason is None
    assert text == "Math problem: A baker sells 120 loaves a day at $3 each. What is the weekly revenue?"
    pilot = "A pilot flies 450 km at 300 km/h and then 200 km at 250 km/h. How long?"
    text, _ = validate("math_problem", pilot)
    assert text.startswith("Math problem: A pilot flies 450 km")


@pytest.mark.parametrize(
    ("data_type", "raw", "reason"),
    [
        ("math_problem", None, "empty"),
        ("math_problem", "   ", "empty"),
        ("math_problem", "I cannot create that problem for you.", "refusal"),
        ("math_problem", "Math problem: 2+2?", "too_short"),
        ("math_problem", "Math problem: how nice are cakes with many good friends? " * 2, "no_numbers"),
        ("logical_reasoning", "Three friends sit on a bench and talk about the rain all day.", "no_question"),
        ("instruction", "Help me.", "too_short"),
        ("knowledge_text", "Title: Bees\nBees make honey.", "too_short"),
        ("math_problem", "What is 12 times 3? " * 20, "repetitive"),
    ],
)
def test_text_rejects(data_type, raw, reason):
    assert validate(data_type, raw) == (None, reason)


TOOL = {
    "name": "Frost Alert",
    "description": "Forecasts the chance of frost for a field.",
    "function_name": "get_frost_risk",
    "input_args": [{"name": "lat", "type": "float", "description": "latitude"}],
    "return": {"type": "object", "description": "hourly probability"},
    "depend": [],
}


def test_tool_json_is_found_in_prose_and_canonicalized():
    raw = "Here is the tool:\n```json\n" + json.dumps(TOOL, indent=2) + "\n```\nHope it helps."
    text, reason = validate("tool", raw)
    assert reason is None and json.loads(text) == TOOL and "\n" not in text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: "{not json", "invalid_json"),
        (lambda t: json.dumps({k: v for k, v in t.items() if k != "depend"}), "missing_keys: depend"),
        (lambda t: json.dumps({**t, "input_args": "lat"}), "wrong_type: input_args should be array"),
        (lambda t: json.dumps({**t, "description": "Frost"}), "too_short: description"),
        (lambda t: "The tool is called Frost Alert.", "invalid_json"),
    ],
)
def test_tool_rejects(change, reason):
    assert validate("tool", change(TOOL)) == (None, reason)


def test_npc_json_is_rendered_as_the_released_text_form():
    npc = {
        "name": "Orla Saltmere",
        "race": "Kelpfolk",
        "class": "Tidecaller",
        "background": "A former harbour pilot who lost her licence saving a smuggler's crew.",
        "interactions": "Sells maps of the new currents to players.",
    }
    text, reason = validate("game_npc", json.dumps(npc))
    assert reason is None
    assert text.splitlines() == [
        "Name: Orla Saltmere",
        "Race: Kelpfolk",
        "Class: Tidecaller",
        "Background: A former harbour pilot who lost her licence saving a smuggler's crew.",
        "Interactions: Sells maps of the new currents to players.",
    ]
    same = {**npc, "race": "Orla Saltmere"}
    assert validate("game_npc", json.dumps(same)) == (None, "repetitive")


def test_repetition_detector():
    assert repetitive("I am the sea, " * 10)
    assert not repetitive("A beekeeper has 12 hives and sells jars of honey at the market every week.")


def test_bad_validator_specs_fail_loudly():
    with pytest.raises(ValueError, match="unknown validator kind"):
        build_validator({"kind": "xml"})
    with pytest.raises(ValueError, match="bad options"):
        build_validator({"kind": "text", "lable": "Oops:"})


def test_real_smollm2_math_answers_are_judged(smollm2_outputs):
    """Answers SmolLM2 actually gave: every one is either accepted or has a known reason."""
    answers = [f["raw"] for f in smollm2_outputs if f["stage"] == "math_problems"]
    results = [validate("math_problem", a) for a in answers]
    known = {"empty", "refusal", "too_short", "too_long", "no_numbers", "repetitive"}
    assert all(reason in known for text, reason in results if text is None)
    accepted = [text for text, _ in results if text is not None]
    assert accepted and all(t.startswith("Math problem:") for t in accepted)
