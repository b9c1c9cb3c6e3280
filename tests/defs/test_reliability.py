"""Real runs in their own processes: a run SIGKILLed mid-stage resumes without paying twice, a planted
API key appears nowhere, and concurrent runs on one lake leave it whole."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.stages.inbox import register
from tests.support.dagster_cli import finish, init_instance, materialize, run_env
from tests.support.fake_openai import FakeOpenAI

DAY, DAY2 = "2026-11-20", "2026-11-21"
SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "sample.jsonl"
JOBS = ["carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian", "welder"]
PROBLEM = "Math problem: A nurse gives 15 mg/kg to a child of {n} kg twice a day. How much per week?"


def persona_or_problem(delay_s: float = 0.0):
    """A deterministic provider: the same request always gets the same answer."""

    def script(_n: int, body: dict) -> tuple[str, str]:
        time.sleep(delay_s)
        h = hashlib.sha256(str(body["messages"]).encode()).hexdigest()
        if "math word problem" in body["messages"][-1]["content"].lower():
            return "ok", PROBLEM.format(n=int(h[:2], 16) % 40 + 5)
        return (
            "ok",
            f"A {JOBS[int(h[:2], 16) % len(JOBS)]} called {h[:8]} who teaches evening classes nearby.",
        )

    return script


def source_texts(lake: Lake, n: int) -> None:
    rows = [
        {
            "text_id": f"t-{i:04d}",
            "partition": DAY,
            "source_uri": "test",
            "doc_id": str(i),
            "text": f"Notes number {i} on restoring timber-framed barns and the tools that it takes.",
            "n_chars": 70,
            "ingested_at": now_utc(),
        }
        for i in range(n)
    ]
    lake.write("source_texts", rows_frame("source_texts", rows), producer="raw_texts", partition=DAY)


def persona_rows(lake: Lake) -> list[tuple]:
    df = lake.read("personas", "partition = ?", [DAY])
    return sorted(df.select("persona_id", "persona", "perspective", "source_text_id").iter_rows())


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]


def test_a_run_killed_mid_stage_resumes_without_paying_twice(tmp_path):
    perspectives = ["read", "write", "like", "dislike"]
    config = {"ops": {"text_personas": {"config": {"perspectives": perspectives}}}}
    n_texts = 60
    total = n_texts * len(perspectives)
    with FakeOpenAI(persona_or_problem(delay_s=0.15)) as server:
        # The reference: the same stage, never interrupted, in a lake of its own.
        ref = tmp_path / "reference"
        source_texts(Lake(ref / "lake"), n_texts)
        finish(materialize("text_personas", DAY, run_env(ref, server.base_url), config))
        assert len(server.requests) == total

        crash = tmp_path / "crash"
        lake = Lake(crash / "lake")
        source_texts(lake, n_texts)
        env = run_env(crash, server.base_url, PERSONAHUB_CONCURRENCY="4")
        proc = materialize("text_personas", DAY, env, config)
        while len(server.requests) < total + 60:  # a quarter of the calls made
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the run process and its step process, no cleanup
        proc.wait()
        sent_before_kill = len(server.requests) - total
        paid = _cached(lake)

        assert 0 < paid < total
        assert persona_rows(lake) == []  # the stage writes its slice once, at the end: nothing half-done

        before = len(server.requests)
        finish(materialize("text_personas", DAY, env, config))
        resumed_calls = len(server.requests) - before

    assert resumed_calls == total - paid  # zero calls for the answers the cache held
    assert sent_before_kill - paid <= 4  # at most the calls in flight at the kill are asked again
    assert persona_rows(lake) == persona_rows(Lake(ref / "lake"))  # the same rows as the uninterrupted run
    ids = [r[0] for r in persona_rows(lake)]
    assert len(ids) == len(set(ids))
    assert temp_files(lake.root / "tables") == []
    print(f"\nkill after {sent_before_kill} calls: {paid} cached, resumed with {resumed_calls} of {total}")


def _cached(lake: Lake) -> int:
    con = ResponseCache(lake.cache_path)._conn()
    return con.execute("SELECT count(*) FROM responses").fetchone()[0]


KEY = "sk-planted-SECRET-7f3a9c2e1b4d"


def test_a_planted_api_key_appears_in_no_log_metadata_lake_or_export(tmp_path):
    def script(n: int, body: dict) -> tuple[str, object]:
        return ("echo_key", None) if n % 7 == 0 else persona_or_problem()(n, body)

    register(SAMPLE, tmp_path / "inbox", DAY)
    config = {
        "ops": {
            "raw_texts": {"config": {"max_texts": 4}},
            "text_personas": {"config": {"perspectives": ["read", "write"]}},
            "expanded_personas": {"config": {"hops": 1}},
            "math_problems": {"config": {"modes": ["zero_shot"]}},
        }
    }
    select = "raw_texts,text_personas,expanded_personas,persona_hub,math_problems,datasets"
    with FakeOpenAI(script) as server:
        env = run_env(tmp_path, server.base_url, PERSONAHUB_API_KEY=KEY)
        output = finish(materialize(select, DAY, env, config))
    # The key was used ...
    assert {h.get("authorization") for h in server.headers} == {f"Bearer {KEY}"}
    lake = Lake(tmp_path / "lake")
    rejects = lake.read("rejects")
    assert rejects["reason"].str.contains("Incorrect API key provided: Bearer \\*\\*\\*").any()
    assert lake.read("generations").height > 0
    assert list((lake.root / "datasets").rglob("*.jsonl"))

    # ... and is nowhere: run output, any file's bytes, any Parquet cell, the instance's event logs.
    assert KEY not in output
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [p for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []
    for p in (p for p in files if p.suffix == ".parquet"):
        df = pl.read_parquet(p)
        for col, dtype in df.schema.items():
            if isinstance(dtype, pl.Array) and dtype.inner.is_numeric():
                continue  # numbers (the hub sample's vectors) cannot hold a key
            assert not df[col].cast(pl.Utf8, strict=False).str.contains(KEY, literal=True).any(), p
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    runs = instance.get_runs()
    assert runs
    events = 0
    for run in runs:
        assert KEY not in json.dumps(run.run_config, default=str)
        for event in instance.all_logs(run.run_id):
            assert KEY not in dg.serialize_value(event)
            events += 1
    n_parquet = sum(p.suffix == ".parquet" for p in files)
    print(f"\nkey absent from {len(files)} files ({n_parquet} Parquet read cell by cell), {events} events")


def _writer(root: str, k: int, rounds: int) -> None:
    lake = Lake(root)
    cache = ResponseCache(lake.cache_path)
    from personahub_dagster.core.llm.cache.records import CachedResponse, CallRecord

    for r in range(rounds):
        rows = [
            {"stage": f"w{k}", "input_id": f"{k}-{r}-{i}", "reason": "test", "partition": f"p{r % 3}"}
            for i in range(50)
        ]
        lake.write("rejects", rows_frame("rejects", rows), producer=f"w{k}", partition=f"p{r % 3}")
        h = f"{k}-{r}"
        call = CallRecord(h, "s", "m", 1, 1, 1, 0.0, 0.1, "ok", None)
        cache.put_many([(h, "m", CachedResponse("x", "stop", 1, 1))], [call])


def test_concurrent_writers_and_readers_never_see_a_broken_lake(tmp_path):
    root = tmp_path / "lake"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), k, 12)) for k in range(4)]
    for p in procs:
        p.start()
    reads = 0
    deadline = time.monotonic() + 300
    while any(p.is_alive() for p in procs):
        assert time.monotonic() < deadline, "the writers did not finish in 300 s"
        counts = Lake(root).counts()  # never an error, never a half-applied commit
        assert counts["rejects"] % 50 == 0
        reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    print(f"\n{reads} whole-lake reads during 4 x 12 concurrent slice writes")
    lake = Lake(root)
    df = lake.read("rejects")
    # Each writer's last round per partition survives whole: 4 writers x 3 partitions x 50 rows.
    assert df.height == 4 * 3 * 50 and df["input_id"].n_unique() == df.height
    assert ResponseCache(lake.cache_path).journal_size() == 4 * 12
    assert temp_files(root) == [] and reads > 0


def persona_text(i: int) -> str:
    verb = ["restores barns", "plays in a quartet", "prices insurance", "keeps bees"][i % 4]
    return f"A {JOBS[i % len(JOBS)]} number {i} who {verb} and mentors apprentices in district {i}."


def hub_personas(lake: Lake) -> None:
    """Two days of personas; the first five of day two repeat day one word for word."""
    for day in (DAY, DAY2):
        rows = [
            {
                "persona_id": f"p-{day}-{i:02d}",
                "persona": persona_text(i if day == DAY or i < 5 else i + 100),
                "method": "text",
                "perspective": "read",
                "source_text_id": f"t-{i:04d}",
                "hop": 0,
                "created_at": now_utc(),
                "partition": day,
            }
            for i in range(30)
        ]
        lake.write("personas", rows_frame("personas", rows), producer="text_personas", partition=day)


@pytest.mark.e2e
def test_two_runs_growing_the_hub_at_once_leave_it_consistent(tmp_path, where, request):
    """On disk the hub's file lock lets one run in at a time; on S3 (runs as if on two machines) the
    state's compare-and-swap commit decides and the loser grows again — the same hub either way."""
    remote = where.startswith("s3://")
    lake = Lake(where)
    hub_personas(lake)
    env = run_env(
        tmp_path, None, PERSONAHUB_LAKE=where, **(request.getfixturevalue("s3").env if remote else {})
    )
    init_instance(env)
    runs = [materialize("persona_hub", day, env) for day in (DAY, DAY2)]
    outputs = [finish(p) for p in runs]
    hub = lake.read("hub")
    assert hub.group_by("partition").len().sort("partition").rows() == [(DAY, 30), (DAY2, 30)]
    assert hub["persona_id"].n_unique() == 60
    # Whichever run went first, the saved state holds both days, with exactly the hub's kept
    # personas; marks follow arrival: the day that entered second has the five copies marked.
    store = lake.files.child("hub_state")
    manifest = HubIndex.manifest(store)
    days = [p["name"] for p in manifest["partitions"]]
    assert sorted(days) == [DAY, DAY2]
    first, second = days
    copies = hub.filter(pl.col("partition") == second, pl.col("persona_id").str.slice(-2).cast(int) < 5)
    assert copies.height == 5 and copies["dup_of"].str.starts_with(f"p-{first}").all()
    state = HubIndex.load(store, DedupConfig(), Embedder())
    kept = hub.filter(pl.col("partition").is_in(days), pl.col("dup_of").is_null())
    assert state is not None and len(state) == kept.height
    said = [line for out in outputs for line in out.splitlines() if "waiting" in line or "meanwhile" in line]
    print("\n" + "\n".join(said))
