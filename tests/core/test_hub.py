"""The hub grows partition by partition with its state in the lake, and matches a rebuild from scratch."""

from __future__ import annotations

import json

import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.dedup import DedupConfig
from personahub_dagster.core.embedder import Embedder
from personahub_dagster.core.hub import grow_hub

DAY1 = [
    "A pediatric nurse who works night shifts in a busy children's hospital.",
    "A jazz pianist who teaches harmony to adult beginners in Chicago.",
    "A pediatric nurse who works night shifts in a busy children's hospital!",
]
DAY2 = [
    "A jazz pianist who teaches harmony to adult beginners in Chicago",  # repeats day 1
    "A soil scientist studying no-till farming and water retention in Iowa.",
    "A children's hospital nurse who works the night shift on a busy pediatric ward.",  # rewording of day 1
]


def personas(day: str, texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "persona_id": [f"p-{day}-{i}" for i in range(len(texts))],
            "persona": texts,
            "method": "text",
            "hop": 0,
            "source_text_id": "t-x",
            "parent_persona_id": None,
            "partition": day,
            "created_at": None,
        }
    )


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_growth_reuses_old_partitions_and_matches_a_rebuild(tmp_path, embedder):
    cfg = DedupConfig()
    first = grow_hub(personas("2026-01-01", DAY1), tmp_path / "grown", embedder, cfg, set())
    assert list(first.hub) == ["2026-01-01"] and first.kept_total == 2
    both = pl.concat([personas("2026-01-01", DAY1), personas("2026-01-02", DAY2)])
    second = grow_hub(both, tmp_path / "grown", embedder, cfg, {"2026-01-01"})
    assert list(second.hub) == ["2026-01-02"] and second.reused == ["2026-01-01"]
    marks = dict(zip(second.hub["2026-01-02"]["persona_id"], second.hub["2026-01-02"]["dup_of"], strict=True))
    assert marks == {
        "p-2026-01-02-0": "p-2026-01-01-1",
        "p-2026-01-02-1": None,
        "p-2026-01-02-2": "p-2026-01-01-0",
    }

    rebuilt = grow_hub(both, tmp_path / "scratch", embedder, cfg, set())
    grown_rows = pl.concat([first.hub["2026-01-01"], second.hub["2026-01-02"]])
    scratch_rows = pl.concat([rebuilt.hub["2026-01-01"], rebuilt.hub["2026-01-02"]])
    assert grown_rows.drop("similarity").equals(scratch_rows.drop("similarity"))

    again = grow_hub(both, tmp_path / "grown", embedder, cfg, {"2026-01-01", "2026-01-02"})
    assert again.hub == {} and again.reused == ["2026-01-01", "2026-01-02"]  # nothing re-embedded


def test_a_changed_earlier_partition_rebuilds_the_state(tmp_path, embedder):
    cfg = DedupConfig()
    grow_hub(personas("d1", DAY1), tmp_path, embedder, cfg, set())
    changed = pl.concat([personas("d1", DAY1[:2]), personas("d2", DAY2)])
    out = grow_hub(changed, tmp_path, embedder, cfg, {"d1"})
    assert sorted(out.hub) == ["d1", "d2"] and out.rebuilt


def test_cli_dedup_marks_every_row_and_grows_a_hub(tmp_path):
    src = tmp_path / "released.jsonl"
    src.write_text(
        "".join(json.dumps({"input persona": t, "n": i}) + "\n" for i, t in enumerate(DAY1 + DAY2))
    )
    out = tmp_path / "marked.parquet"
    assert cli(["dedup", str(src), "--out", str(out), "--hub", str(tmp_path / "hub")]) == 0
    marked = pl.read_parquet(out)
    assert marked.height == 6 and marked["n"].to_list() == list(range(6))
    assert dict(zip(marked["n"], marked["dup_reason"], strict=True)) == {
        0: None,
        1: None,
        2: "minhash",
        3: "minhash",
        4: None,
        5: "embedding",
    }
    assert marked["dup_of"].to_list() == [
        None,
        None,
        "released.jsonl#0",
        "released.jsonl#1",
        None,
        "released.jsonl#0",
    ]
    # a second file is checked against the first one's kept personas
    second = tmp_path / "second.jsonl"
    second.write_text(src.read_text())
    again = tmp_path / "again.jsonl"
    assert cli(["dedup", str(second), "--out", str(again), "--hub", str(tmp_path / "hub")]) == 0
    assert set(pl.read_ndjson(again)["dup_of"]) == {
        "released.jsonl#0",
        "released.jsonl#1",
        "released.jsonl#4",
    }


def test_cli_dedup_rejects_a_file_without_personas(tmp_path, capsys):
    src = tmp_path / "bad.parquet"
    pl.DataFrame({"text": ["x"]}).write_parquet(src)
    assert cli(["dedup", str(src), "--out", str(tmp_path / "o.parquet")]) == 2
    assert "no persona column" in capsys.readouterr().err
