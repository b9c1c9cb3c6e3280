"""Exports in the public PersonaHub release format, with lineage columns, through the core and the CLI."""

from __future__ import annotations

import json

import polars as pl

from personahub_dagster.cli import main as cli
from personahub_dagster.core.lake.export import RELEASE_COLUMNS, export_frame
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake


def stamped(table: str, rows: list[dict]) -> pl.DataFrame:
    return rows_frame(table, [{**r, "partition": "d1", "created_at": now_utc()} for r in rows])


def lake_with_rows(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    personas = [
        {"persona_id": "p-a", "persona": "A beekeeper.", "method": "text", "source_text_id": "t-1", "hop": 0},
        {
            "persona_id": "p-b",
            "persona": "The beekeeper's accountant.",
            "method": "relation",
            "parent_persona_id": "p-a",
            "source_text_id": "t-1",
            "hop": 1,
        },
    ]
    gens = [
        (
            "g-1",
            "math_problem",
            "math problem",
            "zero_shot",
            "p-a",
            "Math problem: 2 hives, 30 kg each?",
        ),
        ("g-2", "math_problem", "math problem", "few_shot", "p-b", "Math problem: 12% tax on $300?"),
        ("g-3", "tool", "tool (function interface)", "zero_shot", "p-b", '{"name": "Tax"}'),
    ]
    columns = ["row_id", "data_type", "description", "prompting_mode", "persona_id", "output"]
    rows = [dict(zip(columns, g, strict=True)) | {"source_text_id": "t-1", "model": "local/m"} for g in gens]
    checks = [
        {"row_id": "g-1", "agreement": True, "answer": "60", "agreeing": 2, "n_solutions": 2},
        {"row_id": "g-2", "agreement": False, "agreeing": 1, "n_solutions": 2},
    ]
    frames = {
        "personas": stamped("personas", personas),
        "generations": stamped("generations", rows),
        "math_checks": stamped("math_checks", checks),
    }
    lake.write_many(frames, producer="test", partition="d1")
    return lake


def test_export_has_release_columns_and_lineage(tmp_path):
    lake = lake_with_rows(tmp_path)
    df = export_frame(lake, "math_problem")
    assert df.columns[:3] == list(RELEASE_COLUMNS)
    assert df.height == 2 and set(df["description"]) == {"math problem"}
    row = df.filter(pl.col("row_id") == "g-2").row(0, named=True)
    assert row["input persona"] == "The beekeeper's accountant." and row["parent_persona_id"] == "p-a"
    assert row["source_text_id"] == "t-1" and row["agreement"] is False
    assert export_frame(lake, "math_problem", agreed_only=True)["row_id"].to_list() == ["g-1"]
    assert export_frame(lake, "math_problem", modes=["few_shot"])["row_id"].to_list() == ["g-2"]


def test_cli_export_jsonl_and_parquet(tmp_path, capsys):
    lake = lake_with_rows(tmp_path)
    out = tmp_path / "math.jsonl"
    assert cli(["export", "--type", "math", "--lake", str(lake.root), str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and {"input persona", "synthesized text", "description", "row_id"} <= set(lines[0])
    assert "answer" in lines[0] and "constraints" not in lines[0]
    pq = tmp_path / "tools.parquet"
    assert cli(["export", "--type", "tools", "--lake", str(lake.root), str(pq)]) == 0
    tools = pl.read_parquet(pq)
    assert tools["synthesized text"].to_list() == ['{"name": "Tax"}'] and "answer" not in tools.columns
    assert cli(["export", "--type", "poems", "--lake", str(lake.root), str(pq)]) == 2
    assert "unknown data type 'poems'" in capsys.readouterr().err


def test_broken_lineage_finds_rows_that_do_not_walk_back(tmp_path):
    lake = lake_with_rows(tmp_path)
    assert lake.broken_lineage("d1") == ["g-1", "g-2", "g-3"]  # no source text t-1 yet
    text = {"text_id": "t-1", "text": "Bees.", "source_uri": "x", "n_chars": 5}
    lake.write_many({"source_texts": stamped("source_texts", [text])}, producer="raw", partition="d1")
    assert lake.broken_lineage("d1") == [] and lake.broken_lineage() == []
    orphan = {
        "row_id": "g-9",
        "data_type": "tool",
        "persona_id": "p-gone",
        "source_text_id": "t-1",
        "output": "{}",
    }
    lake.write_many({"generations": stamped("generations", [orphan])}, producer="other", partition="d1")
    assert lake.broken_lineage("d1") == ["g-9"] and lake.broken_lineage("d2") == []
