"""Persona attributes held to the persona's words: listed values only, an occupation the persona names,
an age band only where the persona states one that agrees; an answer that is not JSON is a reject."""

from __future__ import annotations

import json

import pytest

from personahub_dagster.core.stages.attributes import check_attributes, parse_attributes, stated_age_bands
from personahub_dagster.core.stages.prompts import load_prompt

DOMAINS = [str(d) for d in load_prompt("persona_attributes").extras["domains"]]
NURSE = "A retired pediatric nurse who volunteers at a rural clinic."


def test_values_the_persona_supports_are_kept():
    values, why = check_attributes(
        {"domain": "Health", "occupation": "Nursing", "expertise_level": "expert", "age_band": "older adult"},
        NURSE,
        DOMAINS,
    )
    assert values == {
        "domain": "health",
        "occupation": "nursing",  # grounded by "nurse": a shared stem
        "expertise_level": "expert",
        "age_band": "older adult",
    }
    assert why == {}


def test_what_the_persona_does_not_say_becomes_unknown_with_the_reason():
    values, why = check_attributes(
        {"domain": "astrology", "occupation": "surgeon", "expertise_level": "guru", "age_band": "teen"},
        NURSE,
        DOMAINS,
    )
    assert set(values.values()) == {"unknown"}
    assert why == {
        "domain": "'astrology' is not one of the listed values",
        "occupation": "'surgeon' is not in the persona",
        "expertise_level": "'guru' is not one of the listed values",
        "age_band": "the persona's words allow older adult, not teen",
    }
    values, why = check_attributes({"age_band": "adult"}, "A nurse who works nights.", DOMAINS)
    assert values["age_band"] == "unknown" and why == {"age_band": "the persona states no age or life stage"}


@pytest.mark.parametrize(
    ("persona", "bands"),
    [
        ("A 19-year-old computer science student.", ("teen",)),
        ("A nurse aged 45 who runs marathons.", ("adult",)),
        ("A lawyer in her early thirties.", ("adult",)),
        ("A retired welder who fishes.", ("older adult",)),
        ("A teenage gamer who streams.", ("teen",)),
        ("A nurse who talks with worried parents.", ()),  # others' parents: nothing about the nurse
        ("A carpenter who builds boats.", ()),
    ],
)
def test_age_bands_follow_what_the_persona_states(persona, bands):
    assert stated_age_bands(persona) == bands


def test_an_answer_that_is_not_the_json_asked_for_is_a_reject():
    assert parse_attributes("The person is a nurse.", NURSE, DOMAINS) == (None, "not_json")
    assert parse_attributes("[1, 2]", NURSE, DOMAINS) == (None, "not_json")
    assert parse_attributes("", NURSE, DOMAINS) == (None, "empty")
    row, reason = parse_attributes('Sure! {"domain": "health", "occupation": "nurse"}', NURSE, DOMAINS)
    assert reason is None and row["domain"] == "health" and row["age_band"] == "unknown"
    assert row["corrected"] is None
    raw = '{"domain": "health", "occupation": "pediatric\n- nurse", "expertise_level": "expert"}'
    row, reason = parse_attributes(raw, NURSE, DOMAINS)  # a raw newline in a string: read, not refused
    assert reason is None and row["occupation"] == "pediatric - nurse"
    row, _ = parse_attributes(json.dumps({"domain": "health", "age_band": "child"}), NURSE, DOMAINS)
    assert json.loads(row["corrected"]) == {"age_band": "the persona's words allow older adult, not child"}
