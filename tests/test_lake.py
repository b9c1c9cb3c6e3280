"""The lake: schemas, atomic writes (including SIGKILL mid-write), the DuckDB catalog, lineage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import polars as pl
import pytest

from personahub_dagster.core.ids import content_id
from personahub_dagster.core.lake import Lake, now_utc, rows_frame


def texts_frame(n: int, tag: str = "") -> pl.DataFrame:
    rows = [
        {
            "text_id": content_id("text", f"{tag}{i}"),
            "partition": "p",
            "source_uri": "mem",
            "doc_id": str(i),
            "text": f"{tag} document {i}",
            "n_chars": 10,
            "ingested_at": now_utc(),
        }
        for i in range(n)
    ]
    return rows_frame("source_texts", rows)


def test_write_read_and_catalog(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write("source_texts", texts_frame(3), producer="raw_texts", partition="p")
    assert lake.read("source_texts").height == 3
    assert lake.counts()["source_texts"] == 3 and lake.counts()["personas"] == 0
    # the published catalog is a real DuckDB file that any client can open read-only
    with duckdb.connect(str(lake.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM source_texts").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM generations").fetchone()[0] == 0


def test_rewriting_a_slice_replaces_it(tmp_path):
    lake = Lake(tmp_path)
    lake.write("source_texts", texts_frame(5, "a"), producer="raw_texts", partition="p")
    lake.write("source_texts", texts_frame(2, "b"), producer="raw_texts", partition="p")
    lake.write("source_texts", texts_frame(1, "c"), producer="raw_texts", partition="q")
    assert sorted(lake.read("source_texts")["text"].str.slice(0, 1).to_list()) == ["b", "b", "c"]


def test_unknown_columns_and_bad_names_are_refused(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="not in the schema"):
        lake.write("source_texts", texts_frame(1).with_columns(oops=pl.lit(1)), producer="x", partition="p")
    with pytest.raises(ValueError):
        lake.write("source_texts", texts_frame(1), producer="../x", partition="p")
    with pytest.raises(KeyError):
        lake.write("no_such_table", texts_frame(1), producer="x", partition="p")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    lake = Lake(tmp_path)
    lake.write("source_texts", texts_frame(4, "old"), producer="raw_texts", partition="p")

    def explode(self, fh, **kwargs):
        fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        lake.write("source_texts", texts_frame(9, "new"), producer="raw_texts", partition="p")
    monkeypatch.undo()
    assert lake.read("source_texts")["text"].str.starts_with("old").all()
    assert not list((tmp_path / "tables").rglob("*.tmp"))


WRITER = textwrap.dedent(
    """
    import sys, polars as pl
    from personahub_dagster.core.lake import Lake, rows_frame, now_utc
    lake = Lake(sys.argv[1])
    big = "x" * 2000
    i = 0
    while True:
        n = 20000 + (i % 3) * 5000          # row count tells which write a reader saw
        df = rows_frame("source_texts", [{"text_id": f"t-{i}-{j}", "partition": "p", "source_uri": "u",
                         "doc_id": str(n), "text": big, "n_chars": n, "ingested_at": now_utc()}
                         for j in range(n)])
        lake.write("source_texts", df, producer="raw_texts", partition="p")
        print(i, flush=True)
        i += 1
    """
)


def test_sigkill_mid_write_never_leaves_a_partial_table(tmp_path):
    """Kill a writer at arbitrary moments; every read afterwards sees one complete write."""
    root = tmp_path / "lake"
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
        if attempt == 0:
            proc.stdout.readline()  # make sure at least one complete write exists
        time.sleep(0.3 + 0.37 * attempt)  # land inside a later write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        df = Lake(root).read("source_texts")
        assert df.height in (20000, 25000, 30000), df.height
        assert df["n_chars"].n_unique() == 1 and df["n_chars"][0] == df.height
        assert df["text_id"].str.split("-").list.get(1).n_unique() == 1  # all rows from one write
    leftovers = list((root / "tables").rglob("*.tmp"))  # a killed writer may leave its temp file…
    for tmp in leftovers:
        os.utime(tmp, (0, 0))  # …which the next publish sweeps once it is old
    Lake(root).publish()
    assert not list((root / "tables").rglob("*.tmp"))


def build_chain_lake(tmp_path) -> tuple[Lake, dict[str, str]]:
    """A hand-made lake: text → persona (hop 0) → hop 1 → hop 2 → generated row."""
    lake = Lake(tmp_path)
    ts = now_utc()
    text = texts_frame(1, "nurse")
    tid = text["text_id"][0]
    lake.write("source_texts", text, producer="raw_texts", partition="p")
    p0 = content_id("persona", "text", tid, "read", "A pediatric nurse.")
    p1 = content_id("persona", "relation", p0, "patient", "A child with asthma.")
    p2 = content_id("persona", "relation", p1, "family member", "A father who works night shifts.")
    personas = rows_frame(
        "personas",
        [
            {
                "persona_id": p0,
                "persona": "A pediatric nurse.",
                "method": "text",
                "perspective": "read",
                "source_text_id": tid,
                "hop": 0,
                "created_at": ts,
                "partition": "p",
            },
            {
                "persona_id": p1,
                "persona": "A child with asthma.",
                "method": "relation",
                "relation": "patient",
                "source_text_id": tid,
                "parent_persona_id": p0,
                "hop": 1,
                "created_at": ts,
                "partition": "p",
            },
            {
                "persona_id": p2,
                "persona": "A father who works night shifts.",
                "method": "relation",
                "relation": "family member",
                "source_text_id": tid,
                "parent_persona_id": p1,
                "hop": 2,
                "created_at": ts,
                "partition": "p",
            },
        ],
    )
    lake.write("personas", personas, producer="test", partition="p")
    gid = content_id("generation", "math_problem", "zero_shot", p2, "h")
    lake.write(
        "generations",
        rows_frame(
            "generations",
            [
                {
                    "row_id": gid,
                    "data_type": "math_problem",
                    "prompting_mode": "zero_shot",
                    "persona_id": p2,
                    "source_text_id": tid,
                    "output": "Math problem: 3 shifts of 12 hours…",
                    "created_at": ts,
                    "partition": "p",
                },
            ],
        ),
        producer="test",
        partition="p",
    )
    return lake, {"text": tid, "p0": p0, "p1": p1, "p2": p2, "g": gid}


def test_lineage_walks_from_a_generated_row_to_its_source_text(tmp_path):
    lake, ids = build_chain_lake(tmp_path)
    steps = lake.lineage(ids["g"])
    assert [s.kind for s in steps] == ["generation", "persona", "persona", "persona", "text"]
    assert [s.id for s in steps] == [ids["g"], ids["p2"], ids["p1"], ids["p0"], ids["text"]]
    assert steps[1].detail["relation"] == "family member" and steps[3].detail["perspective"] == "read"
    assert lake.lineage(ids["p1"])[-1].id == ids["text"]


def test_lineage_errors_are_clear(tmp_path):
    lake, _ = build_chain_lake(tmp_path)
    with pytest.raises(KeyError, match="not a lake id"):
        lake.lineage("hello")
    with pytest.raises(KeyError, match="no generated row"):
        lake.lineage("g-" + "0" * 20)


def test_catalog_replacement_is_atomic_for_open_readers(tmp_path):
    lake = Lake(tmp_path)
    lake.write("source_texts", texts_frame(2), producer="raw_texts", partition="p")
    reader = duckdb.connect(str(lake.catalog_path), read_only=True)
    lake.write("source_texts", texts_frame(3, "z"), producer="raw_texts", partition="q")  # republishes
    assert reader.execute("SELECT count(*) FROM source_texts").fetchone()[0] == 5  # views read files live
    reader.close()
