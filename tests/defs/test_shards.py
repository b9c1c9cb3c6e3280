"""Shards: the split of a day's texts, the lake partitions' order, and the sharded definitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.config.shards import (
    day_of,
    keep_shard,
    shard_index,
    shard_names,
    shard_partition,
)


def test_shards_split_texts_evenly_without_overlap():
    texts = pl.DataFrame({"text_id": [content_id("text", f"document {i}") for i in range(3000)]})
    parts = [keep_shard(texts, shard_partition("2026-03-01", s), 3) for s in shard_names(3)]
    assert sum(p.height for p in parts) == texts.height
    assert set().union(*(set(p["text_id"]) for p in parts)) == set(texts["text_id"])
    assert all(900 < p.height < 1100 for p in parts)
    assert keep_shard(texts, "2026-03-01", 3).height == texts.height  # an unsharded day keeps all


def test_lake_partitions_sort_by_day_then_shard():
    names = shard_names(12)
    assert names[:3] == ["00", "01", "02"] and names[-1] == "11"
    keys = ["2026-03-02", *(shard_partition("2026-03-01", s) for s in reversed(names)), "2026-03-01"]
    ordered = sorted(keys)
    assert ordered[0] == "2026-03-01" and ordered[-1] == "2026-03-02"
    assert [shard_index(k) for k in ordered[1:-1]] == list(range(12))
    assert {day_of(k) for k in ordered[:-1]} == {"2026-03-01"}
    with pytest.raises(ValueError):
        shard_names(0)


def test_sharded_definitions_partition_by_day_and_shard_and_request_a_run_per_shard(tmp_path):
    code = """
import json, dagster as dg
from personahub_dagster.core.stages.inbox import register
from personahub_dagster.definitions import defs
from personahub_dagster.defs.automation import nightly_hub_growth
from personahub_dagster.defs.resources import LakeResource
import pathlib, datetime
job = defs().resolve_job_def("hub_growth")
pd = job.partitions_def
src = pathlib.Path("doc.jsonl"); src.write_text('{"text": "x"}\\n')
register(src, "inbox", "2026-03-01")
with dg.build_schedule_context(
    scheduled_execution_time=datetime.datetime(2026, 3, 2, 2, tzinfo=datetime.UTC),
    instance=dg.DagsterInstance.ephemeral(), resources={"lake": LakeResource(inbox="inbox")}) as ctx:
    requests = nightly_hub_growth(ctx)
print(json.dumps({"kind": type(pd).__name__, "dims": [d.name for d in pd.partitions_defs],
                  "keys": [str(r.partition_key) for r in requests]}))
"""
    env = {**os.environ, "PERSONAHUB_SHARDS": "2", "PERSONAHUB_START_DATE": "2026-03-01"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {
        "kind": "MultiPartitionsDefinition",
        "dims": ["day", "shard"],
        "keys": ["2026-03-01|0", "2026-03-01|1"],
    }
