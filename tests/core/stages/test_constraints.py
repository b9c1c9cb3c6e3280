"""Every constraint kind with an answer that meets it and one that does not; draws that are seeded and never
contradict themselves."""

from __future__ import annotations

import itertools

import pytest

from personahub_dagster.core.stages.constraints import CONFLICTS, KINDS, Constraint, draw

LONG = " ".join(["word"] * 130)
CASES = {
    "max_words": ({"n": 50}, "A short answer of seven words here.", " ".join(["word"] * 60)),
    "min_words": ({"n": 120}, LONG, "Too short."),
    "max_sentences": ({"n": 2}, "One sentence. Two sentences.", "One. Two. Three."),
    "paragraphs": ({"n": 2}, "First part.\n\nSecond part.", "Just one paragraph."),
    "bullets": ({"n": 3}, "Plan:\n- one\n- two\n- three", "- one\n- two"),
    "include_keywords": (
        {"keywords": ["budget", "safety"]},
        "Safety first, then the budget.",
        "Only the budget.",
    ),
    "exclude_keyword": ({"keyword": "very"}, "A fine answer.", "A very fine answer."),
    "keyword_frequency": ({"keyword": "budget", "n": 2}, "Budget here, budget there.", "One budget only."),
    "json_format": ({}, '```json\n{"a": 1}\n```', "{'a': 1}"),
    "title": ({}, "<<My plan>>\nThe plan.", "My plan\nThe plan."),
    "lowercase": ({}, "all small letters here.", "Not all small."),
    "uppercase": ({}, "ALL CAPITALS HERE.", "NOT ALL capitals."),
    "end_phrase": (
        {"phrase": "Is there anything else I can help with?"},
        "Done. Is there anything else I can help with?",
        "Is there anything else I can help with? Also this.",
    ),
    "no_commas": ({}, "No commas at all here.", "Commas, here."),
    "quotation": ({}, '"The whole answer quoted."', 'The answer "partly" quoted.'),
    "language": (
        {"language": "fr"},
        "Voici une réponse entièrement écrite en français, comme demandé.",
        "Here is an answer written entirely in English, as asked.",
    ),
    "placeholders": ({"n": 2}, "Send it to [name] at [address].", "Send it to [name]."),
    "postscript": (
        {},
        "The answer.\n\nP.S. One more thing.",
        "P.S. first, then the answer that goes on and on.",
    ),
    "highlights": ({"n": 2}, "This is *important* and *urgent*.", "Only *one* highlight."),
}


def test_the_registry_has_at_least_fifteen_kinds_and_every_kind_a_case():
    assert len(KINDS) >= 15 and set(CASES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_passes_and_fails(kind):
    params, good, bad = CASES[kind]
    c = Constraint(kind, params)
    assert c.describe()  # an instruction sentence
    ok, detail = c.check(good)
    assert ok, detail
    ok, detail = c.check(bad)
    assert not ok and detail


def test_draws_are_seeded_and_compatible():
    first = draw("p-1", 0, 3)
    assert first == draw("p-1", 0, 3) and len(first) == 3
    assert any(draw(f"p-{i}", 0, 3) != first for i in range(2, 10))
    for i, seed in itertools.product(range(60), range(3)):
        kinds = {c.kind for c in draw(f"p-{i}", seed, 3)}
        assert not any(len(kinds & group) > 1 for group in CONFLICTS), kinds
    assert {c.kind for c in draw("p-1", 0, 2, ["no_commas", "title"])} == {"no_commas", "title"}
    with pytest.raises(ValueError, match="unknown constraint kinds"):
        draw("p-1", 0, 1, ["telepathy"])
