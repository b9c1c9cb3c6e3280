"""A published dataset: Parquet shards per configuration and a card, read back offline by the libraries
people train with — ``datasets.load_dataset`` for every configuration, TRL's preference utilities for the
pairs, its conversational check for the dialogues — the card stating sizes, licences and rejects."""

from __future__ import annotations

import json

import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.lake.card import card_header, publish
from personahub_dagster.core.stages.conversations import conversations
from personahub_dagster.core.stages.prompts import load_prompt
from personahub_dagster.core.stages.verifiable import verifiable_instructions
from tests.support.fake_openai import FakeOpenAI

TASK = "Could you help me plan the night-shift rota for the ward so nobody works three nights running?"


def scripted(_n: int, body: dict) -> tuple[str, str]:
    system = body["messages"][0]["content"]
    if system.startswith("You imagine what real people ask"):
        return "ok", TASK
    if system.startswith("You play a real person"):
        return "ok", "How do I plan the rota?" if "User:" not in body["messages"][-1]["content"] else "DONE"
    return "ok", (
        "plan the weekends first and keep two nights apart so that everyone on the ward gets enough rest "
        "between the shifts."
    ) if body["temperature"] < 0.5 else "Plan, then plan."


@pytest.fixture
def lake(chain_lake, make_gateway):
    """The chain lake (its text under CC-BY-SA), with verifiable instructions, pairs and a conversation."""
    lake, _ = chain_lake
    texts = lake.read("source_texts").with_columns(license=pl.lit("cc-by-sa-4.0"))
    lake.write("source_texts", texts, producer="test", partition="p")
    personas = lake.read("personas")
    with FakeOpenAI(scripted) as server:
        gateway = make_gateway(server)
        made = verifiable_instructions(
            personas, gateway, load_prompt("instruction"), load_prompt("assistant_response"),
            partition="p", constraints=(2, 2),
            kinds=["punctuation:no_comma", "change_case:english_lowercase"],
        )  # fmt: skip
        talk = conversations(
            personas.head(1), gateway, load_prompt("conversation_user"), load_prompt("assistant_response"),
            partition="p",
        )  # fmt: skip
    rows = pl.concat([lake.read("generations"), made.rows, talk.rows])
    lake.write_many(
        {"generations": rows, "preference_pairs": made.pairs, "rejects": made.rejects},
        producer="test",
        partition="p",
    )
    lake.write("conversation_turns", talk.turns, producer="test", partition="p")
    return lake


def test_a_published_dataset_loads_with_datasets_and_trl(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets
    from trl.data_utils import is_conversational, unpair_preference_dataset

    out = tmp_path / "published"
    releases = {"math_problem": "math", "verifiable_instruction": "verifiable_instruction"}
    done = publish(lake, out, releases)
    assert done.configs == {
        "math": 1,
        "verifiable_instruction": 3,
        "verifiable_instruction_rlvr": 3,
        "verifiable_instruction_sft": 3,
        "preference": 3,
        "conversation": 1,
    }
    header = card_header((out / "README.md").read_text())
    assert [c["config_name"] for c in header["configs"]] == list(done.configs)
    assert header["license"] == "cc-by-sa-4.0" and header["size_categories"] == ["n<1K"]
    page = (out / "README.md").read_text()
    assert "constraint_failed: change_case:english_lowercase, punctuation:no_comma" in page
    assert "| cc-by-sa-4.0 | 14 |" in page

    math = datasets.load_dataset(str(out), "math", split="train")
    assert math.num_rows == 1 and {"input persona", "synthesized text", "license", "row_id"} <= set(
        math.column_names
    )
    pairs = datasets.load_dataset(str(out), "preference", split="train")
    assert pairs.column_names[:3] == ["prompt", "chosen", "rejected"] and not is_conversational(pairs[0])
    unpaired = unpair_preference_dataset(pairs.select_columns(["prompt", "chosen", "rejected"]))
    assert unpaired.num_rows == 2 * pairs.num_rows and set(unpaired["label"]) == {True, False}
    rlvr = datasets.load_dataset(str(out), "verifiable_instruction_rlvr", split="train")
    assert {"messages", "ground_truth", "dataset", "constraint_type"} <= set(rlvr.column_names)
    assert is_conversational(rlvr[0]) and rlvr[0]["dataset"] == "ifeval"
    assert json.loads(rlvr[0]["ground_truth"])[0]["instruction_id"] == rlvr[0]["constraint_type"].split(", ")
    sft = datasets.load_dataset(str(out), "verifiable_instruction_sft", split="train")
    assert [m["role"] for m in sft[0]["messages"]] == ["user", "assistant"]
    plain = datasets.load_dataset(str(out), "verifiable_instruction", split="train")
    assert plain[0]["prompt"].startswith(TASK)
    talk = datasets.load_dataset(str(out), "conversation", split="train")
    assert is_conversational(talk[0]) and [m["role"] for m in talk[0]["messages"]] == ["user", "assistant"]


def test_publish_from_the_command_line_filters_by_licence(lake, tmp_path, capsys):
    assert cli(["publish", str(tmp_path / "all"), "--lake", str(lake.root)]) == 0
    assert "card:" in capsys.readouterr().out
    assert cli(["publish", str(tmp_path / "none"), "--license", "cc0-1.0", "--lake", str(lake.root)]) == 2
    assert "nothing to publish" in capsys.readouterr().err
