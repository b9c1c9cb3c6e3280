"""Persona stages against a scripted fake provider: hop bookkeeping, cycle cutting, truncation, resume."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.stages.personas import persona_to_persona, text_to_persona
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

JOBS = ["carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian", "welder"]


def unique_persona(_n: int, body: dict) -> tuple[str, str]:
    """A different, well-formed persona for every distinct request (prompt and sampling seed)."""
    h = hashlib.sha256(f"{body['messages']}{body.get('seed')}".encode()).hexdigest()
    job = JOBS[int(h[:2], 16) % len(JOBS)]
    return "ok", f"A {job} called {h[:8]} who teaches evening classes in the town library."


def seeds(n: int = 2) -> pl.DataFrame:
    return rows_frame(
        "personas",
        [
            {
                "persona_id": f"p-seed{i}",
                "persona": f"A pediatric nurse number {i} who works night shifts.",
                "method": "text",
                "perspective": "read",
                "source_text_id": f"t-text{i}",
                "hop": 0,
                "created_at": now_utc(),
                "partition": "x",
            }
            for i in range(n)
        ],
    )


def test_hops_record_parent_relation_and_source(make_gateway):
    template = load_prompt("persona_to_persona")
    with FakeOpenAI(unique_persona) as server:
        out = persona_to_persona(seeds(), make_gateway(server), template, hops=3, fanout=2, partition="x")
    rows = out.rows
    assert rows.group_by("hop").len().sort("hop")["len"].to_list() == [4, 8, 16]
    assert len(server.requests) == 28 and out.stats.calls == 28
    ids_by_hop = {h: set(rows.filter(pl.col("hop") == h)["persona_id"]) for h in (1, 2, 3)}
    ids_by_hop[0] = {"p-seed0", "p-seed1"}
    for r in rows.iter_rows(named=True):
        assert r["parent_persona_id"] in ids_by_hop[r["hop"] - 1]
        assert r["relation"] in template.extras["relations"]
        assert r["method"] == "relation" and r["source_text_id"] in {"t-text0", "t-text1"}
    # each child inherits its root's text: walk one chain by hand
    leaf = rows.filter(pl.col("hop") == 3).row(0, named=True)
    parents = dict(zip(rows["persona_id"], rows["parent_persona_id"], strict=True))
    node = leaf["persona_id"]
    while node in parents:
        node = parents[node]
    assert node == leaf["source_text_id"].replace("t-text", "p-seed")
    assert out.rejects.is_empty()


def test_repeats_and_cycles_are_cut(make_gateway):
    same = "A retired sailor who repairs wooden boats in the harbour."
    with FakeOpenAI(lambda n, b: ("ok", same)) as server:
        out = persona_to_persona(
            seeds(),
            make_gateway(server),
            load_prompt("persona_to_persona"),
            hops=3,
            fanout=2,
            partition="x",
        )
    assert out.rows["persona"].to_list() == [same]  # hop 1 keeps the first; hop 2 would be its own child
    assert out.rejects["reason"].value_counts().sort("reason").rows() == [
        ("known_persona", 3),
        ("same_as_parent", 2),
    ]
    assert len(server.requests) == 4 + 2  # hop 3 never runs: hop 2 produced nothing new


def test_model_named_relations(make_gateway):
    def script(n, body):
        return (
            "ok",
            f"Relation: business partner\nPersona: A bakery owner number {n} who supplies three cafés.",
        )

    with FakeOpenAI(script) as server:
        out = persona_to_persona(
            seeds(1), make_gateway(server), load_prompt("persona_to_persona_free"), hops=2, partition="x"
        )
    assert out.rows["relation"].to_list() == ["business partner", "business partner"]


def test_resume_after_an_interruption_at_hop_3_repeats_no_call(make_gateway):
    template = load_prompt("persona_to_persona")
    hop_of_call: list[int] = []

    class Killed(Exception):
        pass

    def kill_in_hop_3(done: int, total: int) -> None:
        hop_of_call.append(total)
        if total == 16 and done == 5:  # hop 3 (16 requests): die after its 5th answer
            raise Killed

    with FakeOpenAI(unique_persona) as server:
        gw = make_gateway(server, concurrency=1)
        with pytest.raises(Killed):
            persona_to_persona(seeds(), gw, template, hops=3, fanout=2, partition="x", progress=kill_in_hop_3)
        # The call woken as the 5th answer lands sees the stage failing and is never sent.
        assert len(server.requests) == 4 + 8 + 5
        resumed = persona_to_persona(seeds(), make_gateway(server), template, hops=3, fanout=2, partition="x")
    # Every answer received before the kill is reused; the resumed run asks only for the rest.
    assert resumed.stats.cache_hits == 4 + 8 + 5 and resumed.rows.height == 28
    assert resumed.stats.calls == 28 - 17 and len(server.requests) == 28


def test_long_texts_are_truncated_and_flagged(make_gateway):
    texts = pl.DataFrame(
        {"text_id": ["t-short", "t-long"], "text": ["A short note about bees and honey.", "word " * 3000]}
    )
    with FakeOpenAI(unique_persona) as server:
        out = text_to_persona(
            texts,
            make_gateway(server),
            load_prompt("text_to_persona"),
            perspectives=["read", "dislike"],
            max_text_tokens=200,
            partition="x",
        )
        prompt_words = [len(b["messages"][-1]["content"].split()) for b in server.requests]
    flags = dict(zip(out.rows["source_text_id"], out.rows["text_truncated"], strict=False))
    assert flags == {"t-short": False, "t-long": True}
    assert max(prompt_words) < 260  # 200 text tokens + the instructions, not 3000 words
    assert set(out.rows["perspective"]) == {"read", "dislike"}


def test_unknown_perspective_is_a_clear_error(make_gateway):
    with FakeOpenAI() as server, pytest.raises(ValueError, match="unknown perspectives"):
        text_to_persona(
            pl.DataFrame({"text_id": ["t"], "text": ["x"]}),
            make_gateway(server),
            load_prompt("text_to_persona"),
            perspectives=["smell"],
            partition="x",
        )
