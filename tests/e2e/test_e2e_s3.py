"""End to end on object storage: the whole pipeline, two days, with the lake on a real S3-compatible
server (SeaweedFS on 127.0.0.1), against the same two days on local disk.

Both runs share one response cache (the local run pays the model, the S3 run is answered from the
cache), so any difference between the two lakes is the lake's doing, not the model's sampling."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.lake.schemas import SCHEMAS, TS
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.lake.time_travel import AsOf
from personahub_dagster.core.stages.inbox import register
from personahub_dagster.defs.stages.synthesis import registry

pytestmark = pytest.mark.e2e

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "sample.jsonl"
BENCHMARK = Path(__file__).parents[1] / "fixtures" / "benchmark_math.jsonl"
DAYS = ("2026-11-20", "2026-11-21")
CONFIG = {
    "ops": {
        "raw_texts": {"config": {"max_texts": 2}},
        "text_personas": {"config": {"perspectives": ["read", "write"]}},
        "expanded_personas": {"config": {"hops": 1}},
        "contamination_checks": {"config": {"against": [str(BENCHMARK)], "text_field": "problem"}},
        **{dt.asset: {"config": {"n_personas": 1}} for dt in registry().values()},
    }
}


def run_two_days(lake: str, inbox: Path, cache: Path, workdir: Path) -> list[dg.ExecuteInProcessResult]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONAHUB_LAKE", lake)
        mp.setenv("PERSONAHUB_INBOX", str(inbox))
        mp.setenv("PERSONAHUB_CACHE", str(cache))
        mp.chdir(workdir)
        from personahub_dagster.definitions import defs

        job = defs().resolve_job_def("persona_hub_pipeline")
        instance = dg.DagsterInstance.ephemeral()
        return [job.execute_in_process(run_config=CONFIG, instance=instance, partition_key=d) for d in DAYS]


def comparable(lake: Lake, table: str) -> pl.DataFrame:
    """The table without the moments rows were written, in a fixed order."""
    df = lake.read(table)
    if table == "llm_calls":
        return df.select("request_hash", "stage", "model", "status").sort(pl.all())
    return df.select([c for c, t in SCHEMAS[table].items() if t != TS]).sort(pl.all())


def test_two_days_on_s3_give_the_same_lake_as_on_local_disk(s3, tmp_path):
    inbox = tmp_path / "inbox"
    register(SAMPLE, inbox, DAYS[0])
    day2 = pl.read_ndjson(SAMPLE).slice(20, 4)
    day2.write_ndjson(tmp_path / "day2.jsonl")
    register(tmp_path / "day2.jsonl", inbox, DAYS[1])
    cache = tmp_path / "cache" / "llm_cache.sqlite"
    local_dir, remote_cwd = tmp_path / "local", tmp_path / "cwd"
    local_dir.mkdir()
    remote_cwd.mkdir()

    local_runs = run_two_days(str(local_dir / "lake"), inbox, cache, local_dir)
    remote_runs = run_two_days(s3.url, inbox, cache, remote_cwd)
    assert all(r.success for r in local_runs + remote_runs)

    local, remote = Lake(local_dir / "lake"), Lake(s3.url)
    counts = local.counts()
    assert counts["generations"] > 0 and counts["hub"] == counts["personas"] > 0
    assert remote.counts() == counts
    for table in SCHEMAS:
        assert comparable(remote, table).equals(comparable(local, table)), table

    # the hub grew on S3 from its own saved state: day 2 marked alone, day 1's marks kept
    hub2 = remote_runs[1].asset_materializations_for_node("persona_hub")[0].metadata
    assert hub2["partitions_marked"].value == [DAYS[1]] and hub2["state_rebuilds"].value == 0
    manifest = HubIndex.manifest(remote.files.child("hub_state"))
    assert [p["name"] for p in manifest["partitions"]] == list(DAYS)
    assert manifest["kept"] == remote.read("hub", "dup_of IS NULL").height

    # everything the lake holds followed the URL: exports and reports are objects, nothing local
    keys = remote.files.list()
    for dt in registry().values():
        assert f"datasets/{dt.release}/{DAYS[1]}.parquet" in keys
    assert f"reports/{DAYS[1]}.html" in keys
    assert list(remote_cwd.iterdir()) == []  # the S3 runs wrote no file where they ran
    logs = [k for k in keys if "/_delta_log/" in k and k.endswith(".json")]
    assert logs and not any(s3.env["AWS_SECRET_ACCESS_KEY"].encode() in remote.files.get(k) for k in logs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "cwd", "day2.jsonl", "inbox", "local"]

    # every materialization recorded the Delta versions it wrote, usable with --as-of
    meta = remote_runs[0].asset_materializations_for_node("text_personas")[0].metadata
    versions = meta["delta_versions"].value
    assert set(versions) == {"personas", "rejects", "llm_calls"}  # its calls, mirrored with its rows
    as_of = remote.read("personas", as_of=AsOf.parse(meta["as_of"].value))
    assert set(as_of["partition"]) == {DAYS[0]}
    assert os.environ.get("PERSONAHUB_LAKE") != s3.url  # the runs' settings did not leak
