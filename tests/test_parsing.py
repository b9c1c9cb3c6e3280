"""Parsing LLM answers into personas, relations and problems — and the reasons when that fails.

The first group are real answers of the embedded SmolLM2-135M model to our prompts."""

from __future__ import annotations

import pytest

from personahub_dagster.core.parsing import parse_math_problem, parse_persona, parse_relation

SOURCE = "Food safety reminder for home canners: low-acid foods like green beans must be pressure canned."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # real SmolLM2 outputs
        (
            "A city planner with expertise in urban design and urban forestry.",
            "A city planner with expertise in urban design and urban forestry.",
        ),
        (
            "The person likely to read this text is a food blogger who specializes in "
            "Japanese-inspired foods.",
            "A food blogger who specializes in Japanese-inspired foods.",
        ),
        (
            "The person with expertise in JavaScript and a background in data science would likely be a "
            "front-end developer, as they have a deep understanding of the language.",
            "A front-end developer, as they have a deep understanding of the language.",
        ),
        # formatting noise
        (
            '**Persona:** "A retired welder who restores vintage motorcycles."\nExtra commentary here.',
            "A retired welder who restores vintage motorcycles.",
        ),
        (
            "1. An ICU nurse who trains new staff. She also volunteers. Third sentence dropped.",
            "An ICU nurse who trains new staff. She also volunteers.",
        ),
    ],
)
def test_personas_are_cleaned(raw, expected):
    assert parse_persona(raw, SOURCE) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \n  ", "empty"),
        (None, "empty"),
        ("I'm sorry, but I cannot help with that request.", "refusal"),
        ("As an AI, I don't describe people.", "refusal"),
        ("A: healthcare professional", "too_short"),
        ("This text is specifically about a job, expertise, or interest.", "not_a_person"),
        # real SmolLM2 output that copies the input
        (
            "Food safety reminder for home canners: low-acid foods like green beans must be pressure canned.",
            "echo_of_input",
        ),
    ],
)
def test_bad_personas_get_a_reason(raw, reason):
    assert parse_persona(raw, SOURCE) == (None, reason)


def test_relation_answers():
    ok = "Relation: younger brother\nPersona: A high-school student who builds robots for competitions."
    assert parse_relation(ok, "A nurse.") == (
        ("younger brother", "A high-school student who builds robots for competitions."),
        None,
    )
    assert parse_relation("A close family member.", "A nurse.") == (None, "missing_relation")
    assert parse_relation("Relation: friend\nSomething else", "A nurse.") == (None, "missing_persona")
    same = "Relation: self\nPersona: A pediatric nurse on night shifts."
    assert parse_relation(same, "A pediatric nurse on night shifts.") == (None, "same_as_parent")


def test_math_problems():
    good = (
        "Sure! Math problem: A bakery sells 120 loaves a day at $4 each. If costs are $310 a day, "
        "what is the weekly profit?"
    )
    text, reason = parse_math_problem(good)
    assert reason is None and text.startswith("Math problem: A bakery sells 120")
    assert (
        parse_math_problem("Math problem: think about cakes and how nice they are to eat together")[1]
        == "no_numbers"
    )
    assert parse_math_problem("Math problem: 2+2?")[1] == "too_short"
    assert parse_math_problem("I cannot create that problem for you.")[1] == "refusal"
