"""Persona-driven conversations against a scripted model: turns alternate, the user's DONE ends one, and
the ways a simulated dialogue goes wrong (the user turning into the assistant, a loop, an empty turn)
are rejects with the turn they happened in; every turn walks back to its persona and source text."""

from __future__ import annotations

import json

import polars as pl

from personahub_dagster.core.stages.conversations import DATA_TYPE, conversations
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

NEEDS = {
    "A pediatric nurse.": [
        "How do I explain an inhaler to a six-year-old?",
        "And if the child is scared of the mask?",
    ],
    "A child with asthma.": ["Certainly! Here is a plan for your asthma.", "x"],  # the user turns assistant
    "A father who works night shifts.": ["When should my son take his evening dose?"] * 2,  # a loop
}


def scripted(_n: int, body: dict) -> tuple[str, str]:
    messages = body["messages"]
    if messages[0]["content"].startswith("You play a real person"):
        prompt = messages[-1]["content"]
        persona = prompt.split("Persona: ", 1)[1].split("\n", 1)[0]
        turn = prompt.count("User: ")
        script = NEEDS[persona]
        return "ok", script[turn] if turn < len(script) else "DONE"
    asked = [m["content"] for m in messages if m["role"] == "user"]
    return "ok", f"Here is what to do about: {asked[-1]} Start small and keep it calm (answer {len(asked)})."


def test_conversations_alternate_end_on_done_and_reject_what_goes_wrong(chain_lake, make_gateway):
    lake, ids = chain_lake
    personas = lake.read("personas")
    with FakeOpenAI(scripted) as server:
        out = conversations(
            personas,
            make_gateway(server),
            load_prompt("conversation_user"),
            load_prompt("assistant_response"),
            partition="p",
            turns=3,
        )
    assert out.rows.height == 1 and out.rows["data_type"][0] == DATA_TYPE
    row = out.rows.row(0, named=True)
    assert row["persona_id"] == ids["p0"] and json.loads(row["constraints"]) == {"turns": 2}
    turns = out.turns.sort("turn")
    assert turns["role"].to_list() == ["user", "assistant", "user", "assistant"]
    assert turns["content"][0] == NEEDS["A pediatric nurse."][0] and set(turns["conversation_id"]) == {
        row["row_id"]
    }
    reasons = dict(zip(out.rejects["input_id"], out.rejects["reason"], strict=True))
    assert reasons == {ids["p1"]: "user_became_assistant at turn 0", ids["p2"]: "loop at turn 1"}
    # the assistant saw the whole dialogue each time (its second answer knows of the first exchange)
    assert "answer 2" in turns["content"][3]

    lake.write_many(
        {"generations": out.rows, "conversation_turns": out.turns}, producer="conversations", partition="p"
    )
    chain = lake.lineage(turns["turn_id"][2])
    assert [s.kind for s in chain[:2]] == ["turn", "generation"] and chain[-1].id == ids["text"]
    assert chain[0].detail["role"] == "user" and chain[0].detail["turn"] == 2


def test_messages_export(chain_lake, make_gateway):
    from personahub_dagster.core.lake.export import export_conversations

    lake, _ = chain_lake
    with FakeOpenAI(scripted) as server:
        out = conversations(
            lake.read("personas").filter(pl.col("persona") == "A pediatric nurse."),
            make_gateway(server),
            load_prompt("conversation_user"),
            load_prompt("assistant_response"),
            partition="p",
        )
    lake.write_many(
        {"generations": out.rows, "conversation_turns": out.turns}, producer="conversations", partition="p"
    )
    frame = export_conversations(lake, partitions=["p"])
    [messages] = frame["messages"].to_list()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert frame["license"][0] == "unknown" and frame["conversation_id"][0] == out.rows["row_id"][0]


def test_a_turn_cut_by_the_token_limit_keeps_its_whole_sentences(chain_lake, make_gateway):
    lake, _ = chain_lake

    def long_winded(_n: int, body: dict) -> tuple[str, str]:
        if body["messages"][0]["content"].startswith("You play a real person"):
            if "User:" in body["messages"][-1]["content"]:
                return "ok", "DONE"
            return "length", "How do I explain an inhaler to a child? She is six and she"
        return "length", "Show it on a toy first. Then let her"

    with FakeOpenAI(long_winded) as server:
        out = conversations(
            lake.read("personas").head(1),
            make_gateway(server),
            load_prompt("conversation_user"),
            load_prompt("assistant_response"),
            partition="p",
        )
    assert out.turns.sort("turn")["content"].to_list() == [
        "How do I explain an inhaler to a child?",
        "Show it on a toy first.",
    ]
