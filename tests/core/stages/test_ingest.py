"""Ingestion from JSONL, Parquet and text folders; what cannot be used is reported, not dropped silently."""

from __future__ import annotations

import polars as pl

from personahub_dagster.core.stages.ingest import Document, read_documents, to_source_texts
from personahub_dagster.core.stages.prompts import bundled_assets_dir


def test_the_sample_corpus_is_big_and_varied():
    docs, skipped = read_documents([bundled_assets_dir() / "corpus"])
    assert len(docs) >= 60 and not skipped
    texts, _ = to_source_texts(docs, "p")
    assert texts.height == len(docs)  # no duplicates
    domains = {d.doc_id.rsplit("-", 1)[0] for d in docs}
    assert len(domains) >= 12


def test_mixed_sources_and_their_problems(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"text": "The first document talks about farming and soil health."}\n'
        "{broken json\n"
        '{"body": "no text field here"}\n'
        '{"text": "The first document talks about farming and soil health."}\n'
        '{"text": "tiny"}\n'
    )
    pl.DataFrame({"text": ["A parquet document about jazz piano voicings."], "id": ["x1"]}).write_parquet(
        tmp_path / "b.parquet"
    )
    pl.DataFrame({"content": ["wrong column"]}).write_parquet(tmp_path / "c.parquet")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "n1.txt").write_text("A plain text note about the history of printing presses.")
    (folder / "bin.txt").write_bytes(b"\xff\xfe\x00bad utf8")

    docs, skipped = read_documents([tmp_path])
    reasons = sorted(s.reason.split(":")[0] for s in skipped)
    assert reasons == [
        "binary file (NUL bytes), not text",
        "invalid JSON",
        "no column 'text' (columns",
        "no string field 'text'",
    ]
    texts, short = to_source_texts(docs, "day1", min_chars=20)
    assert texts.height == 3  # the duplicate JSONL line is one text
    assert [s.reason for s in short] == ["text shorter than 20 characters"]
    assert set(texts["partition"]) == {"day1"} and texts["text_id"].str.starts_with("t-").all()


def test_max_texts_is_a_stable_sample(tmp_path):
    docs, _ = read_documents([bundled_assets_dir() / "corpus"])
    a, _ = to_source_texts(docs, "p", max_texts=10)
    b, _ = to_source_texts(list(reversed(docs)), "p", max_texts=10)
    assert a["text_id"].to_list() == b["text_id"].to_list()


def test_a_text_already_ingested_on_an_earlier_day_is_skipped():
    docs = [Document("a.jsonl:1", "1", "A long enough text about beekeeping in winter.")]
    first, _ = to_source_texts(docs, "2026-11-20")
    again, skipped = to_source_texts(docs, "2026-11-21", known={first["text_id"][0]: "2026-11-20"})
    assert again.height == 0 and skipped[0].reason == "already ingested in partition 2026-11-20"
    same_day, skipped = to_source_texts(docs, "2026-11-20", known={first["text_id"][0]: "2026-11-20"})
    assert same_day.height == 1 and not skipped  # re-running a day keeps its own texts
