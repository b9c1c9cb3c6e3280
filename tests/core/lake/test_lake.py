"""The lake: Delta tables on local disk and on a real S3-compatible server (SeaweedFS, started by the
tests): slice replacement, commits that are whole or absent (SIGKILL mid-commit), concurrent writers,
versions and time travel, compaction, bad settings, conversion of an old lake, lineage."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.migrate import content_hash
from personahub_dagster.core.lake.schemas import SCHEMAS, now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.lake.time_travel import AsOf
from personahub_dagster.core.llm.cache.records import CALL_SCHEMA
from personahub_dagster.core.storage.location import StorageError

LEGACY = Path(__file__).parents[2] / "fixtures" / "legacy_lake"


def texts_frame(n: int, tag: str = "", partition: str = "p") -> pl.DataFrame:
    rows = [
        {
            "text_id": content_id("text", f"{tag}{i}"),
            "partition": partition,
            "source_uri": "mem",
            "doc_id": str(i),
            "text": f"{tag} document {i}",
            "n_chars": 10,
            "ingested_at": now_utc(),
        }
        for i in range(n)
    ]
    return rows_frame("source_texts", rows)


def test_write_read_and_any_delta_reader(where):
    lake = Lake(where)
    version = lake.write("source_texts", texts_frame(3), producer="raw_texts", partition="p")
    assert version == 1 and lake.versions() == {"source_texts": 1}  # version 0: the empty table
    assert lake.read("source_texts").height == 3
    assert lake.counts()["source_texts"] == 3 and lake.counts()["personas"] == 0
    # a plain Delta table: any Delta reader sees the rows (and the hidden column naming the stage)
    df = pl.read_delta(lake.table_uri("source_texts"), storage_options=dict(lake.location.options))
    assert df.height == 3 and set(df["_producer"]) == {"raw_texts"}
    assert list(lake.read("source_texts").columns) == list(SCHEMAS["source_texts"])


def test_rewriting_a_slice_replaces_it(where):
    lake = Lake(where)
    lake.write("source_texts", texts_frame(5, "a"), producer="raw_texts", partition="p")
    lake.write("source_texts", texts_frame(2, "b"), producer="raw_texts", partition="p")
    lake.write("source_texts", texts_frame(1, "c", "q"), producer="raw_texts", partition="q")
    lake.write("source_texts", texts_frame(1, "d"), producer="other_stage", partition="p")
    texts = sorted(lake.read("source_texts")["text"].str.slice(0, 1).to_list())
    assert texts == ["b", "b", "c", "d"]
    lake.write("source_texts", texts_frame(0), producer="raw_texts", partition="p")  # an empty slice
    assert sorted(lake.read("source_texts")["text"].str.slice(0, 1).to_list()) == ["c", "d"]


def test_unknown_columns_and_bad_names_are_refused(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="not in the schema"):
        lake.write("source_texts", texts_frame(1).with_columns(oops=pl.lit(1)), producer="x", partition="p")
    for bad in ("../x", "a b", "x'; DROP", ""):
        with pytest.raises(ValueError, match="invalid producer/partition"):
            lake.write("source_texts", texts_frame(1), producer=bad, partition="p")
    with pytest.raises(KeyError):
        lake.write("no_such_table", texts_frame(1), producer="x", partition="p")
    assert not lake.exists()


def test_a_refused_frame_commits_nothing(tmp_path):
    """Frames are checked before any commit: one bad frame of a stage leaves every table as it was."""
    lake = Lake(tmp_path)
    lake.write("source_texts", texts_frame(4, "old"), producer="raw_texts", partition="p")
    before = lake.versions()
    with pytest.raises(ValueError, match="not in the schema"):
        lake.write_many(
            {"source_texts": texts_frame(9, "new"), "rejects": pl.DataFrame({"bogus": [1]})},
            producer="raw_texts",
            partition="p",
        )
    with pytest.raises(ValueError, match="rows of partitions"):
        lake.write("source_texts", texts_frame(2, "x", partition="q"), producer="raw_texts", partition="p")
    assert lake.versions() == before
    assert lake.read("source_texts")["text"].str.starts_with("old").all()


WRITER = textwrap.dedent(
    """
    import sys
    from personahub_dagster.core.lake.tables import Lake
    from personahub_dagster.core.lake.schemas import now_utc, rows_frame
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


def test_sigkill_mid_commit_leaves_the_previous_version(where):
    """Kill a writer at arbitrary moments; every read afterwards sees one complete write, and
    compaction + vacuum then leave no file that no version reads (a killed writer's data files)."""
    versions = set()
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, where], stdout=subprocess.PIPE, text=True)
        if attempt == 0:
            proc.stdout.readline()  # make sure at least one complete write exists
        time.sleep(0.3 + 0.37 * attempt)  # land inside a later write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lake = Lake(where)
        df = lake.read("source_texts")
        assert df.height in (20000, 25000, 30000), df.height
        assert df["n_chars"].n_unique() == 1 and df["n_chars"][0] == df.height
        assert df["text_id"].str.split("-").list.get(1).n_unique() == 1  # all rows from one write
        versions.add(lake.versions()["source_texts"])
    assert len(versions) > 1  # the kills landed after different numbers of commits
    lake = Lake(where)
    rows = lake.read("source_texts").sort("text_id")
    lake.optimize(retention_hours=0, log=lambda _: None)
    data_files = [k for k in lake.files.list("tables/source_texts") if "_delta_log" not in k]
    assert len(data_files) == 1  # every older version's files and every orphan are gone
    assert lake.read("source_texts").sort("text_id").equals(rows)


def test_an_open_reader_keeps_its_version_while_writers_commit(tmp_path):
    lake = Lake(tmp_path)
    lake.write("source_texts", texts_frame(2), producer="raw_texts", partition="p")
    reader = lake.connect()
    lake.write("source_texts", texts_frame(3, "z"), producer="raw_texts", partition="p")
    lake.write("source_texts", texts_frame(3, "y", "q"), producer="raw_texts", partition="q")
    assert reader.execute("SELECT count(*) FROM source_texts").fetchone()[0] == 2  # its snapshot
    reader.close()
    assert lake.counts()["source_texts"] == 6


def _writer(where: str, env: dict[str, str], k: int, rounds: int, out) -> None:
    os.environ.update(env)
    lake, made = Lake(where), []

    def write(table: str, rows: list[dict], producer: str, day: str) -> None:
        version = lake.write(table, rows_frame(table, rows), producer=producer, partition=day)
        made.append((table, producer, version))

    write("generations", [], f"w{k}", "d0")  # all four create this table at once
    for r in range(rounds):
        # writers 0 and 1 replace the same slice (the same stage and day); 2 and 3 their own, by day
        producer, day = ("shared", "d0") if k < 2 else (f"w{k}", f"d{r % 3}")
        rows = [{"stage": f"w{k}", "input_id": f"{k}-{r}-{i}", "partition": day} for i in range(50)]
        write("rejects", rows, producer, day)
    out.put(made)


def test_concurrent_writers_lose_and_duplicate_nothing(where, request):
    env = request.getfixturevalue("s3").env if where.startswith("s3://") else {}
    Lake(where).write("rejects", rows_frame("rejects", []), producer="init", partition="d0")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(where, env, k, 6, out)) for k in range(4)]
    for p in procs:
        p.start()
    reads = 0
    deadline = time.monotonic() + 300
    while any(p.is_alive() for p in procs) and out.qsize() < len(procs):
        assert time.monotonic() < deadline, "the writers did not finish in 300 s"
        assert Lake(where).counts()["rejects"] % 50 == 0  # never a half-applied commit
        reads += 1
    made = [m for _ in procs for m in out.get(timeout=120)]
    for p in procs:
        p.join()
        assert p.exitcode == 0
    lake = Lake(where)
    df = lake.read("rejects")
    # the shared slice holds one writer's one round; writers 2 and 3 their last round of each day
    shared = df.filter(pl.col("partition") == "d0", pl.col("stage").is_in(["w0", "w1"]))
    assert shared.height == 50 and shared["input_id"].str.extract(r"^(\d+-\d+)-").n_unique() == 1
    assert df.filter(pl.col("stage").is_in(["w2", "w3"])).height == 2 * 3 * 50
    assert df["input_id"].n_unique() == df.height == 50 + 2 * 3 * 50
    assert reads > 0
    # every write was told the version of its own commit: distinct, and the commit names its writer
    # (version 0 creates the table; on a loaded object store two creators can both get a create commit in)
    generations = sorted(v for t, _, v in made if t == "generations")
    assert len(set(generations)) == 4 and generations[0] >= 1 and generations[-1] - generations[0] == 3
    assert sorted(v for t, _, v in made if t == "rejects") == list(range(2, 2 + 4 * 6))
    for table, producer, version in made:
        log = lake.files.get(f"tables/{table}/_delta_log/{version:020d}.json").decode()
        assert f'"personahub.producer":"{producer}"' in log


def test_versions_time_travel_and_history(where):
    lake = Lake(where, commit_info={"dagster.run_id": "run-42"})
    v1 = lake.write("source_texts", texts_frame(5, "a"), producer="raw_texts", partition="p")
    time.sleep(1.1)  # object stores date commits to the second
    between = datetime.now(UTC)
    time.sleep(1.1)
    v2 = lake.write("source_texts", texts_frame(2, "b"), producer="raw_texts", partition="p")
    assert (v1, v2) == (1, 2) and lake.committed == {"source_texts": 2}
    assert lake.read("source_texts").height == 2
    assert lake.read("source_texts", as_of=AsOf.parse(f"source_texts={v1}")).height == 5
    assert lake.read("source_texts", as_of=AsOf(timestamp=between)).height == 5
    assert lake.read("personas", as_of=AsOf(timestamp=between)).height == 0
    commit = lake.history("source_texts")[0]
    assert commit["version"] == 2 and commit["personahub.producer"] == "raw_texts"
    assert commit["dagster.run_id"] == "run-42"


def test_as_of_is_parsed_with_clear_errors():
    assert AsOf.parse("hub=3, personas=10").versions == {"hub": 3, "personas": 10}
    assert AsOf.parse("2026-11-29T10:00:00Z").timestamp == datetime(2026, 11, 29, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="versions are per table"):
        AsOf.parse("12")
    with pytest.raises(ValueError, match="TABLE=VERSION"):
        AsOf.parse("nosuchtable=3")
    with pytest.raises(ValueError, match="neither a timestamp"):
        AsOf.parse("yesterday")


def test_cli_sql_and_lineage_as_of(chain_lake, capsys):
    lake, ids = chain_lake
    where = lake.uri
    lake.write("source_texts", texts_frame(4, "later", "q"), producer="raw_texts", partition="q")
    count = "SELECT count(*) * 1000 + 7 AS n FROM source_texts"
    assert cli(["sql", count, "--lake", where]) == 0
    assert "5007" in capsys.readouterr().out
    assert cli(["sql", count, "--as-of", "source_texts=1", "--lake", where]) == 0  # the first write
    assert "1007" in capsys.readouterr().out
    assert cli(["lineage", ids["g"], "--as-of", "source_texts=1", "--lake", where]) == 0
    assert cli(["sql", "SELECT 1", "--as-of", "7", "--lake", where]) == 2
    assert "versions are per table" in capsys.readouterr().err
    assert cli(["lake", "history", "source_texts", "--lake", where]) == 0
    assert "raw_texts q" in capsys.readouterr().out


def test_optimize_compacts_and_vacuums_without_changing_a_row(tmp_path):
    lake = Lake(tmp_path)
    for i in range(6):  # six rewrites of one slice and six slices of another day
        lake.write("source_texts", texts_frame(3, f"r{i}"), producer="raw_texts", partition="p")
        lake.write("rejects", rows_frame("rejects", [{"stage": "s", "input_id": str(i), "partition": "q"}]),
                   producer=f"stage_{i}", partition="q")  # fmt: skip
    rows = {t: lake.read(t).sort(pl.all()) for t in ("source_texts", "rejects")}
    files_before = len([k for k in lake.files.list("tables") if "_delta_log" not in k])
    report = {r["table"]: r for r in lake.optimize(retention_hours=0, log=lambda _: None)}
    files_after = len([k for k in lake.files.list("tables") if "_delta_log" not in k])
    assert report["source_texts"]["vacuumed"] == 5 and files_before == 12 and files_after == 7
    assert all(lake.read(t).sort(pl.all()).equals(rows[t]) for t in rows)


def test_a_wrong_endpoint_credential_or_bucket_is_one_clear_line(s3, capsys):
    bad = {
        "AWS_ENDPOINT_URL": ("http://127.0.0.1:9", s3.url, "AWS_ENDPOINT_URL"),
        "AWS_SECRET_ACCESS_KEY": ("not-the-secret", s3.url, "AWS_SECRET_ACCESS_KEY"),
        "bucket": (None, "s3://no-such-bucket/lake", "bucket 'no-such-bucket'"),
    }
    for setting, (value, url, named) in bad.items():
        env = dict(s3.env)
        if value is not None:
            env[setting] = value
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            started = time.monotonic()
            with pytest.raises(StorageError, match=named) as err:
                Lake(url).write("source_texts", texts_frame(2), producer="raw_texts", partition="p")
            assert time.monotonic() - started < 30
            message = str(err.value)
            assert "\n" not in message and "PERSONAHUB_LAKE" in message
            assert s3.env["AWS_SECRET_ACCESS_KEY"] not in message and "not-the-secret" not in message
            assert cli(["stats", "--lake", url]) == 2
            err_text = capsys.readouterr().err.strip()
            assert err_text.count("\n") == 0 and named in err_text
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in repr(Lake(s3.url).location)  # settings never print a secret
    assert not Lake(s3.url).exists()  # nothing was written under the lake by any of them
    assert Lake(s3.url).files.list() == []


def test_a_lake_of_the_parquet_slice_layout_is_refused_then_converted_losing_nothing(tmp_path, capsys):
    root = tmp_path / "old"
    shutil.copytree(LEGACY, root)
    legacy = {t: pl.read_parquet(sorted((root / "tables" / t).glob("*/*.parquet"))) for t in
              ("source_texts", "personas", "hub", "generations", "rejects", "llm_calls")}  # fmt: skip
    with pytest.raises(StorageError, match="personahub lake migrate"):
        Lake(root).read("personas")
    assert cli(["lake", "migrate", "--lake", str(root)]) == 0
    out = capsys.readouterr().out
    lake = Lake(root)
    for table, old in legacy.items():
        new = lake.read(table)
        assert new.height == old.height > 0, table
        assert content_hash(table, new) == content_hash(table, old), table
        assert f"{table}" in out and "MISMATCH" not in out
    # producers and days came along: a stage's slice can still be replaced alone
    lake.write("personas", lake.read("personas", "hop = 1").head(0), producer="expanded_personas",
               partition="2026-11-20")  # fmt: skip
    assert (
        lake.read("personas", "partition = '2026-11-20'").height
        == legacy["personas"].filter(pl.col("partition") == "2026-11-20", pl.col("hop") == 0).height
    )
    row = lake.read("generations")["row_id"][0]
    assert [s.kind for s in lake.lineage(row)] == ["generation", "persona", "persona", "text"]
    assert (root / "legacy-parquet" / "personas").is_dir() and not (root / "personahub.duckdb").exists()
    assert cli(["lake", "migrate", "--lake", str(root)]) == 0  # a second run has nothing to do


def test_lineage_walks_from_a_generated_row_to_its_source_text(chain_lake):
    lake, ids = chain_lake
    steps = lake.lineage(ids["g"])
    assert [s.kind for s in steps] == ["generation", "persona", "persona", "persona", "text"]
    assert [s.id for s in steps] == [ids["g"], ids["p2"], ids["p1"], ids["p0"], ids["text"]]
    assert steps[1].detail["relation"] == "family member" and steps[3].detail["perspective"] == "read"
    assert lake.lineage(ids["p1"])[-1].id == ids["text"]


def test_lineage_errors_are_clear(chain_lake):
    lake, _ = chain_lake
    with pytest.raises(KeyError, match="not a lake id"):
        lake.lineage("hello")
    with pytest.raises(KeyError, match="no generated row"):
        lake.lineage("g-" + "0" * 20)


def test_the_call_journal_is_mirrored_by_blocks_past_the_last_copy(tmp_path, fake_provider, monkeypatch):
    """Each write copies only the calls journaled since (the last block rewritten whole, new blocks
    added): what a night copies does not grow with the journal; a lake that opened no cache copies
    nothing; a retry copies the same rows."""
    from personahub_dagster.core.lake import journal as lake_module
    from personahub_dagster.core.llm.config import LLMConfig
    from personahub_dagster.core.llm.gateway import LLMGateway
    from personahub_dagster.core.llm.results import LLMRequest

    monkeypatch.setattr(lake_module, "JOURNAL_BLOCK", 4)
    lake = Lake(tmp_path / "lake")
    server = fake_provider()
    gateway = LLMGateway(
        LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-x"), lake.response_cache()
    )

    def ask(first: int, n: int) -> None:
        gateway.generate([LLMRequest(f"k{i}", [{"role": "user", "content": f"q{i}"}]) for i in
                          range(first, first + n)], "t")  # fmt: skip

    def copied() -> list[tuple[str, str]]:
        return [(c.get("personahub.producer"), c["operation"]) for c in lake.history("llm_calls", None)
                if c["operation"] != "CREATE TABLE"][::-1]  # fmt: skip

    ask(0, 6)
    lake.write("source_texts", texts_frame(1), producer="s", partition="p")
    assert lake.read("llm_calls")["request_hash"].n_unique() == 6
    assert [p for p, _ in copied()] == ["journal.000000", "journal.000001"]
    ask(6, 1)
    lake.write("source_texts", texts_frame(1), producer="s", partition="p")
    assert [p for p, _ in copied()][2:] == ["journal.000001"]  # block 0 was whole: not copied again
    lake.write("source_texts", texts_frame(1), producer="s", partition="p")  # nothing new: no commit
    assert len(copied()) == 3 and lake.read("llm_calls").height == 7
    other = Lake(tmp_path / "lake")  # a stage that calls no LLM
    other.write("source_texts", texts_frame(2), producer="s", partition="p")
    assert len(copied()) == 3
    order = ["request_hash", "attempt"]
    assert lake.read("llm_calls").sort(order).equals(lake.response_cache().calls_frame().sort(order))


def test_texts_ingested_on_earlier_days_are_found_by_their_ids_alone(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write(
        "source_texts", texts_frame(3, "a", "2026-01-01"), producer="raw_texts", partition="2026-01-01"
    )
    lake.write(
        "source_texts", texts_frame(2, "b", "2026-01-02"), producer="raw_texts", partition="2026-01-02"
    )
    asked = [content_id("text", "a0"), content_id("text", "b1"), content_id("text", "new")]
    assert lake.ingested_before(asked, "2026-01-02") == {asked[0]: "2026-01-01"}  # its own day is not earlier
    assert lake.ingested_before(asked, "2026-01-03") == {asked[0]: "2026-01-01", asked[1]: "2026-01-02"}
    assert lake.ingested_before([], "2026-01-03") == {}


def test_an_older_lakes_call_journal_gains_the_mode_column(tmp_path):
    """``llm_calls`` written before calls had a mode: read with mode null, then the next copy of
    the journal adds the column to the table (old files read it as null)."""
    from deltalake import DeltaTable, write_deltalake

    from personahub_dagster.core.llm.cache.records import CachedResponse, CallRecord

    lake = Lake(tmp_path / "lake", cache=tmp_path / "cache.sqlite")
    old = {c: t for c, t in CALL_SCHEMA.items() if c != "mode"}
    legacy = pl.DataFrame([{"request_hash": "old", "stage": "s", "status": "ok"}], schema=old)
    write_deltalake(
        lake.table_uri("llm_calls"),
        legacy.with_columns(pl.lit("journal.000000").alias("_producer")).to_arrow(),
        partition_by=["_producer"],
    )
    assert lake.read("llm_calls")["mode"].to_list() == [None]
    cache = lake.response_cache()
    for h in ("a", "b"):
        call = CallRecord(h, "s", "m", 1, 1, 1, 0.0, None, "ok", None, "r", mode="batch")
        cache.put_many([(h, "m", CachedResponse("x", "stop", 1, 1))], [call])
    lake.write("rejects", rows_frame("rejects", []), producer="t", partition="p")
    assert "mode" in {f.name for f in DeltaTable(lake.table_uri("llm_calls")).schema().fields}
    assert sorted(lake.read("llm_calls")["mode"].to_list()) == ["batch", "batch"]
