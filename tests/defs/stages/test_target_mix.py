"""A synthesis asset drawn to a target mix over the hub's columns: the personas it uses meet the target,
the run's metadata says what was reached, and a target the hub cannot meet is reported, not hidden."""

from __future__ import annotations

import dagster as dg
import polars as pl

from personahub_dagster.core.lake.schemas import conform, now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.synthesis import registry, synthesis_asset

DAY = "2026-11-21"
ANSWER = "Math problem: A beekeeper keeps 12 hives of 3000 bees each; how many bees does she keep in all?"


def _hub(lake: Lake) -> None:
    """40 kept personas of one text, 20% of them relations of the first: the hub and its lineage."""
    rows = [
        {
            "persona_id": f"p-{i:03d}",
            "persona": f"A beekeeper who also repairs clocks, number {i}.",
            "method": "relation" if i % 5 == 0 else "text",
            "hop": 1 if i % 5 == 0 else 0,
            "source_text_id": "t-1",
            "parent_persona_id": "p-001" if i % 5 == 0 else None,
            "partition": DAY,
            "created_at": now_utc(),
        }
        for i in range(40)
    ]
    text = {"text_id": "t-1", "partition": DAY, "text": "Bees and clocks.", "ingested_at": now_utc()}
    lake.write("source_texts", rows_frame("source_texts", [text]), producer="raw_texts", partition=DAY)
    lake.write("personas", rows_frame("personas", rows), producer="text_personas", partition=DAY)
    lake.write("hub", rows_frame("hub", rows), producer="persona_hub", partition=DAY)


def _run(tmp_path, server, target: dict, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    asset = synthesis_asset(registry()["math_problem"])
    config = {"n_personas": 4, "modes": ["zero_shot"], "target_mix": target}
    return dg.materialize(
        [asset],
        partition_key=DAY,
        resources={
            "lake": LakeResource(path=str(tmp_path / "lake")),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "prompts": PromptsResource(),
        },
        run_config={"ops": {asset.key.path[-1]: {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def test_the_draw_meets_the_target_and_says_what_it_reached(tmp_path, fake_provider):
    lake = Lake(tmp_path / "lake")
    _hub(lake)
    server = fake_provider(lambda _n, _b: ("ok", ANSWER))
    result = _run(tmp_path, server, {"method": {"relation": 1.0}})
    assert result.success
    used = set(lake.read("generations", "partition = ?", [DAY])["persona_id"])
    hub = lake.read("hub")
    relations = set(hub.filter(hub["method"] == "relation")["persona_id"])
    assert len(used) == 4 and used <= relations  # a uniform draw of 4 would rarely be all relations
    [event] = result.asset_materializations_for_node("math_problems")
    meta = event.metadata
    assert meta["target_mix_reached"].value["method"]["relation"] == 1.0
    assert meta["target_mix_shortfalls"].value == []


def test_a_target_the_hub_cannot_meet_is_reported_and_the_rest_still_drawn(tmp_path, fake_provider):
    _hub(Lake(tmp_path / "lake"))
    server = fake_provider(lambda _n, _b: ("ok", ANSWER))
    result = _run(tmp_path, server, {"method": {"telepathy": 0.5, "relation": 0.5}})
    assert result.success
    [event] = result.asset_materializations_for_node("math_problems")
    [short] = event.metadata["target_mix_shortfalls"].value
    assert short["value"] == "telepathy" and short["reason"] == "absent" and short["reached"] == 0.0
    assert event.metadata["target_mix_reached"].value["method"]["relation"] == 1.0  # pro rata
    assert event.metadata["personas_used"].value == 4


def test_a_target_over_persona_attributes_joins_the_days_attributes(tmp_path, fake_provider):
    lake = Lake(tmp_path / "lake")
    _hub(lake)
    server = fake_provider(lambda _n, _b: ("ok", ANSWER))
    assert not _run(tmp_path, server, {"domain": {"health": 1.0}}, raise_on_error=False).success  # none yet
    hub = lake.read("hub")
    attributes = hub.select("persona_id", "persona", "partition").with_columns(
        domain=pl.when(pl.col("persona_id").str.ends_with("7"))
        .then(pl.lit("health"))
        .otherwise(pl.lit("trades"))
    )
    lake.write(
        "persona_attributes",
        conform("persona_attributes", attributes),
        producer="persona_attributes",
        partition=DAY,
    )
    result = _run(tmp_path, server, {"domain": {"health": 1.0}})
    assert result.success
    used = set(lake.read("generations", "partition = ?", [DAY])["persona_id"])
    assert len(used) == 4 and all(p.endswith("7") for p in used)
