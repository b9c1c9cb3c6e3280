"""``verifiable_instructions`` as an asset, and its pairs exported in TRL's DPO format: the day's rows,
verdicts and pairs in one commit, the pass rate per constraint in the metadata, and an export that TRL's
own dataset utilities read as a preference dataset."""

from __future__ import annotations

import dagster as dg
import polars as pl

from personahub_dagster.core.lake.export import DPO_COLUMNS, export_pairs
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.verifiable import verifiable_instructions_asset

DAY = "2026-11-22"
TASK = "Could you draft a short note to my beekeeping club about moving the honey harvest to Saturday?"


def answer(_n: int, body: dict) -> tuple[str, str]:
    if body["messages"][0]["content"].startswith("You imagine what real people ask"):
        return "ok", TASK
    calm = body["temperature"] < 0.5
    return (
        "ok",
        "dear club members the harvest moves to saturday." if calm else "Dear club, the harvest MOVES.",
    )


def hub(lake: Lake) -> None:
    text = {
        "text_id": "t-1",
        "partition": DAY,
        "text": "Bees.",
        "license": "cc-by-4.0",
        "ingested_at": now_utc(),
    }
    rows = [
        {
            "persona_id": f"p-{i:03d}",
            "persona": f"A beekeeper who runs club number {i}.",
            "method": "text",
            "hop": 0,
            "source_text_id": "t-1",
            "partition": DAY,
            "created_at": now_utc(),
        }
        for i in range(6)
    ]
    lake.write("source_texts", rows_frame("source_texts", [text]), producer="raw_texts", partition=DAY)
    lake.write("personas", rows_frame("personas", rows), producer="text_personas", partition=DAY)
    lake.write("hub", rows_frame("hub", rows), producer="persona_hub", partition=DAY)


def test_the_asset_commits_rows_verdicts_and_pairs(tmp_path, fake_provider):
    lake = Lake(tmp_path / "lake")
    hub(lake)
    server = fake_provider(answer)
    config = {
        "n_personas": 4,
        "min_constraints": 2,
        "max_constraints": 2,
        "kinds": ["punctuation:no_comma", "change_case:english_lowercase"],
    }
    result = dg.materialize(
        [verifiable_instructions_asset],
        partition_key=DAY,
        resources={
            "lake": LakeResource(path=str(tmp_path / "lake")),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "prompts": PromptsResource(),
        },
        run_config={"ops": {"verifiable_instructions": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [event] = result.asset_materializations_for_node("verifiable_instructions")
    assert event.metadata["rows"].value == 4 and event.metadata["preference_pairs"].value == 4
    assert "punctuation:no_comma" in event.metadata["pass_rate_by_constraint"].value
    assert lake.read("constraint_checks", partitions=[DAY]).height == 4 * 2 * 2
    assert all(c.passed for c in result.get_asset_check_evaluations() if c.check_name == "lineage")

    pairs = export_pairs(lake, partitions=[DAY])
    assert list(pairs.columns[:3]) == list(DPO_COLUMNS) and pairs.height == 4
    assert set(pairs["license"]) == {"cc-by-4.0"} and set(pairs["judge"]) == {"checker"}
    assert pairs.filter(pl.col("chosen") == pl.col("rejected")).is_empty()
    assert export_pairs(lake, partitions=[DAY], licenses={"cc0-1.0"}).is_empty()


def test_judged_pairs_as_an_asset(tmp_path, fake_provider):
    from personahub_dagster.defs.stages.preferences import preference_pairs_asset

    lake = Lake(tmp_path / "lake")
    hub(lake)
    made = rows_frame(
        "generations",
        [
            {
                "row_id": f"g-{i:020d}",
                "data_type": "math_problem",
                "prompting_mode": "zero_shot",
                "constraints": "{}",
                "persona_id": f"p-{i:03d}",
                "source_text_id": "t-1",
                "prompt": f"Persona: A beekeeper who runs club number {i}.\n\nWrite one math word problem.",
                "output": "Math problem: A shop sells 12 boxes a day. How many in 5 days?",
                "partition": DAY,
            }
            for i in range(4)
        ],
    )
    lake.write("generations", made, producer="math_problems", partition=DAY)

    def reply(_n: int, body: dict) -> tuple[str, str]:
        if body["messages"][0]["content"].startswith("You are a strict, fair judge"):
            return "ok", "Better: A\nReason: (1) it does what was asked."
        return "ok", "Math problem: A beekeeper has 12 hives of 3,000 bees. How many bees?"

    asset = preference_pairs_asset(["math_problems"])
    server = fake_provider(reply)
    result = dg.materialize(
        [asset],
        partition_key=DAY,
        resources={
            "lake": LakeResource(path=str(tmp_path / "lake")),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "prompts": PromptsResource(),
        },
        run_config={"ops": {"preference_pairs": {"config": {"n_rows": 4}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [event] = result.asset_materializations_for_node("preference_pairs")
    assert event.metadata["pairs"].value == 4 and event.metadata["rows_sampled"].value == 4
    pairs = export_pairs(lake, partitions=[DAY])
    assert pairs.height == 4 and set(pairs["reason"]) == {"(1) it does what was asked."}
    assert set(pairs["judge"]) == {"openai/fake"} and set(pairs["license"]) == {"cc-by-4.0"}
