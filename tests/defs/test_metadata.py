"""Dagster's standard metadata on every table asset: the catalog shows a table's columns before any
run (``dagster/column_schema`` at definition), and each materialization says how many rows it wrote
(``dagster/row_count``) and where the table is (``dagster/uri``)."""

from __future__ import annotations

import dagster as dg

from personahub_dagster.core.lake.schemas import SCHEMAS
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.inbox import register
from personahub_dagster.definitions import defs
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.ingest import raw_texts
from personahub_dagster.defs.stages.personas import text_personas

TABLE_ASSETS = {
    "raw_texts": "source_texts",
    "text_personas": "personas",
    "expanded_personas": "personas",
    "persona_hub": "hub",
    "persona_attributes": "persona_attributes",
    "hub_composition": "hub_composition",
    "verifiable_instructions": "generations",
    "conversations": "generations",
    "preference_pairs": "preference_pairs",
    "math_problems": "generations",
    "tools": "generations",
    "math_checks": "math_checks",
    "contamination_checks": "contamination",
    "diversity_bands": "diversity_pairs",
}
DAY = "2026-11-21"


def test_every_table_asset_shows_its_columns_before_any_run():
    graph = defs().resolve_asset_graph()
    for asset, table in TABLE_ASSETS.items():
        key = dg.AssetKey(asset)
        schema = graph.get(key).metadata["dagster/column_schema"].schema
        assert [c.name for c in schema.columns] == list(SCHEMAS[table]), asset
        assert all(c.type for c in schema.columns)


def test_a_materialization_reports_rows_written_columns_and_the_tables_uri(tmp_path, fake_provider):
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text(
        "".join(
            f'{{"id": "d{i}", "text": "A long enough article about coastal tides and harbours, part {i}."}}\n'
            for i in range(3)
        )
    )
    register(corpus, tmp_path / "inbox", DAY)
    server = fake_provider(lambda _n, _b: ("ok", "A harbour master who teaches tide safety to kayakers."))
    result = dg.materialize(
        [raw_texts, text_personas],
        partition_key=DAY,
        resources={
            "lake": LakeResource(path=str(tmp_path / "lake"), inbox=str(tmp_path / "inbox")),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "prompts": PromptsResource(),
        },
        run_config={"ops": {"text_personas": {"config": {"perspectives": ["read"]}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    lake = Lake(tmp_path / "lake")
    for asset, table in (("raw_texts", "source_texts"), ("text_personas", "personas")):
        [event] = result.asset_materializations_for_node(asset)
        meta = event.metadata
        assert meta["dagster/row_count"].value == lake.read(table, "partition = ?", [DAY]).height > 0
        assert meta["dagster/uri"].value == lake.table_uri(table)
        assert [c.name for c in meta["dagster/column_schema"].schema.columns] == list(SCHEMAS[table])
