"""Parsing LLM answers into personas, relations and problems — and the reasons when that fails.

The first group are real answers of the embedded SmolLM2-135M model to our prompts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personahub_dagster.core.stages.parsing import PersonaFilters, is_english, parse_persona, parse_relation

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
    fields, reason = parse_persona(raw, SOURCE)
    assert reason is None and fields.persona == expected


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
    (relation, fields), reason = parse_relation(ok, "A nurse.")
    assert (relation, fields.persona, reason) == (
        "younger brother",
        "A high-school student who builds robots for competitions.",
        None,
    )
    assert parse_relation("A close family member.", "A nurse.") == (None, "missing_relation")
    assert parse_relation("Relation: friend\nSomething else", "A nurse.") == (None, "missing_persona")
    same = "Relation: self\nPersona: A pediatric nurse on night shifts."
    assert parse_relation(same, "A pediatric nurse on night shifts.") == (None, "same_as_parent")


def test_structured_answers_are_validated():
    raw = (
        '```json\n{"persona": "An ICU nurse who mentors new graduates.", "occupation": "nurse", '
        '"domain": "critical care", "expertise_level": "expert", "extra": 1}\n```'
    )
    fields, reason = parse_persona(raw)
    assert reason is None
    assert (fields.persona, fields.occupation, fields.domain, fields.expertise_level) == (
        "An ICU nurse who mentors new graduates.",
        "nurse",
        "critical care",
        "expert",
    )
    assert parse_persona('{"persona": "An ICU nurse", ') == (None, "invalid_json")
    assert parse_persona('{"occupation": "nurse"}') == (None, "schema_mismatch")
    assert parse_persona('{"persona": ""}') == (None, "schema_mismatch")


def test_filters_are_knobs():
    long = "A " + "nurse and teacher and " * 30 + "volunteer."
    assert parse_persona(long) == (None, "too_long")
    assert parse_persona(long, filters=PersonaFilters(max_words=200))[1] is None
    spanish = "Una enfermera pediátrica que trabaja de noche en un hospital infantil."
    assert parse_persona(spanish) == (None, "wrong_language")
    assert parse_persona(spanish, filters=PersonaFilters(language=None))[1] is None
    assert parse_persona("A nurse, retired.", filters=PersonaFilters(min_words=2))[1] is None
    assert (
        parse_persona(
            "The text is about nurses and their nights.", filters=PersonaFilters(require_person=False)
        )[1]
        is None
    )
    assert is_english("A farmer who grows rice in the delta") and not is_english("Ein Bauer, der Reis anbaut")


FIXTURES = [
    json.loads(line) for line in (Path(__file__).parents[2] / "fixtures" / "smollm2_outputs.jsonl").open()
]
KNOWN_REASONS = {
    "empty",
    "refusal",
    "too_short",
    "too_long",
    "not_a_person",
    "wrong_language",
    "echo_of_input",
    "invalid_json",
    "schema_mismatch",
}


def test_real_smollm2_answers_parse_or_get_a_known_reason():
    """Every saved answer of the embedded model to our Text-to-Persona and Persona-to-Persona prompts
    either yields a clean persona or one of the known reasons — and most of them yield a persona."""
    answers = [f for f in FIXTURES if f["stage"] in ("text_personas", "expanded_personas")]
    accepted = 0
    for f in answers:
        fields, reason = parse_persona(f["raw"], f.get("source_text"))
        if fields is None:
            assert reason in KNOWN_REASONS, (f["raw"], reason)
            continue
        accepted += 1
        p = fields.persona
        assert p[0].isupper() and 4 <= len(p.split()) <= 80 and "\n" not in p
        assert not p.lower().startswith(("persona:", "**", "@")), p
        assert not re.match(r"the person [^.]*\b(is|would be|is likely to be) an? ", p.lower()), p
    assert accepted / len(answers) >= 0.8, f"only {accepted}/{len(answers)} real answers accepted"
