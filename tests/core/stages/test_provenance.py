"""Licence and provenance: a document's own licence and URL, a sidecar's for a folder of pages, the
per-source rules, ``unknown`` when nothing says; carried to every derived row's lineage and export, and an
export filtered by licence."""

from __future__ import annotations

import json

import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.evaluation.report import build_report
from personahub_dagster.core.lake.export import export_frame
from personahub_dagster.core.lake.schemas import rows_frame
from personahub_dagster.core.stages.ingest import read_documents, to_source_texts
from personahub_dagster.core.stages.provenance import (
    COMMERCIAL_SAFE,
    LicenseRules,
    normalize,
    wanted_licenses,
)

TEXT = "Nurses on night shifts care for children with asthma in the city hospital, year after year."


def test_each_document_brings_its_own_licence_and_url(tmp_path):
    (tmp_path / "wiki.jsonl").write_text(
        json.dumps({"id": "a", "text": TEXT, "license": "CC BY-SA 4.0", "url": "https://w.example/a"})
        + "\n"
        + json.dumps({"id": "b", "text": TEXT + " Again.", "licence": "cc0-1.0"})
        + "\n"
        + json.dumps({"id": "c", "text": TEXT + " Third."})
        + "\n"
    )
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "p1.txt").write_text(TEXT + " A page.")
    (pages / "p1.txt.meta.json").write_text(
        json.dumps({"license": "MIT", "source_url": "https://p.example/1"})
    )
    (pages / "p2.txt").write_text(TEXT + " Another page.")
    pl.DataFrame(
        {"text": [TEXT + " Row."], "license": ["Apache-2.0"], "source_url": ["https://r.example"]}
    ).write_parquet(tmp_path / "rows.parquet")
    docs, skipped = read_documents([tmp_path / "wiki.jsonl", pages, tmp_path / "rows.parquet"])
    assert not skipped  # the sidecar is read with its page, not as a document of its own
    rules = LicenseRules({"*/p2.txt": "CC-BY-4.0", "wiki.jsonl": "gpl-3.0"}, default="proprietary")
    rows, _ = to_source_texts(docs, "2026-01-01", licenses=rules)
    got = {r["doc_id"]: (r["license"], r["source_url"]) for r in rows.iter_rows(named=True)}
    assert got == {
        "a": ("cc-by-sa-4.0", "https://w.example/a"),  # the record's own, normalised
        "b": ("cc0-1.0", None),
        "c": ("gpl-3.0", None),  # the rule for its file
        "p1": ("mit", "https://p.example/1"),  # the sidecar's
        "p2": ("cc-by-4.0", None),  # the rule's glob on the path
        "0": ("apache-2.0", "https://r.example"),  # the Parquet row's
    }
    rows, _ = to_source_texts(docs, "2026-01-01")  # no rules: what nothing names is unknown
    assert dict(zip(rows["doc_id"], rows["license"], strict=True))["p2"] == "unknown"


def test_a_sidecar_that_cannot_be_read_holds_back_its_file_with_the_reason(tmp_path):
    (tmp_path / "p.txt").write_text(TEXT)
    (tmp_path / "p.txt.meta.json").write_text("license: mit")
    docs, skipped = read_documents([tmp_path])
    assert docs == [] and len(skipped) == 1
    assert skipped[0].source_uri.endswith("p.txt") and "p.txt.meta.json" in skipped[0].reason


def test_licence_names():
    assert normalize("  CC BY 4.0 ") == "cc-by-4.0" and normalize("") is None and normalize(None) is None
    assert wanted_licenses(["commercial-safe", "CC-BY-NC-4.0"]) == COMMERCIAL_SAFE | {"cc-by-nc-4.0"}
    assert not any("-nc" in x for x in COMMERCIAL_SAFE)


@pytest.fixture
def licensed_lake(chain_lake):
    """The chain lake, its text under CC-BY-SA, and a second generated row from an unlicensed text."""
    lake, ids = chain_lake
    texts = lake.read("source_texts").with_columns(
        license=pl.lit("cc-by-sa-4.0"), source_url=pl.lit("https://w.example/nurses")
    )
    lake.write("source_texts", texts, producer="test", partition="p")
    other = rows_frame(
        "generations",
        [
            {
                "row_id": "g-other",
                "data_type": "math_problem",
                "prompting_mode": "zero_shot",
                "persona_id": ids["p2"],
                "source_text_id": "t-nowhere-licensed",
                "output": "Math problem: 2 + 2?",
                "partition": "p",
            }
        ],
    )
    rows = pl.concat([lake.read("generations"), other])
    lake.write("generations", rows, producer="test", partition="p")
    return lake, ids


def test_every_derived_row_carries_its_texts_licence_and_an_export_filters_by_it(
    licensed_lake, tmp_path, capsys
):
    lake, ids = licensed_lake
    every = export_frame(lake, "math_problem", partitions=["p"])
    assert dict(zip(every["row_id"], every["license"], strict=True)) == {
        ids["g"]: "cc-by-sa-4.0",
        "g-other": "unknown",
    }
    assert every.filter(pl.col("row_id") == ids["g"])["source_url"][0] == "https://w.example/nurses"
    safe = export_frame(lake, "math_problem", licenses=wanted_licenses(["commercial-safe"]))
    assert safe["row_id"].to_list() == [ids["g"]]
    assert export_frame(lake, "math_problem", licenses={"cc0-1.0"}).is_empty()
    text_step = lake.lineage(ids["g"])[-1]
    assert text_step.kind == "text" and text_step.detail["license"] == "cc-by-sa-4.0"

    out = tmp_path / "safe.jsonl"
    assert (
        cli(["export", "--type", "math", "--license", "commercial-safe", "--lake", str(lake.root), str(out)])
        == 0
    )
    assert "licences: cc-by-sa-4.0 1" in capsys.readouterr().out
    assert [json.loads(x)["license"] for x in out.read_text().splitlines()] == ["cc-by-sa-4.0"]
    page = build_report(lake, "p")
    assert "<h2>Licences" in page and "cc-by-sa-4.0" in page and "(a text of another day)" in page
