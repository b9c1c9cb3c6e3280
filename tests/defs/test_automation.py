"""The inbox, the inbox sensor and the nightly schedule, evaluated the way the Dagster daemon does."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import dagster as dg
import pytest

from personahub_dagster.core.stages.inbox import day_files, fingerprints, partition_paths, register
from personahub_dagster.defs.automation import inbox_sensor, nightly_hub_growth
from personahub_dagster.defs.resources import LakeResource


def drop(inbox, day: str, name: str = "a.jsonl", text: str = "x") -> None:
    src = inbox.parent / "src" / name
    src.parent.mkdir(exist_ok=True)
    src.write_text(json.dumps({"text": text}) + "\n")
    register(src, inbox, day)


def test_register_is_atomic_and_days_are_fingerprinted(tmp_path):
    inbox = tmp_path / "inbox"
    assert fingerprints(inbox) == {}
    drop(inbox, "2026-11-20")
    (inbox / "2026-11-20" / ".b.jsonl-123.tmp").write_text("half a file")  # a copy in progress
    (inbox / "not-a-day").mkdir()
    first = fingerprints(inbox)
    assert list(first) == ["2026-11-20"] and [p.name for p in day_files(inbox, "2026-11-20")] == ["a.jsonl"]
    drop(inbox, "2026-11-20", "b.jsonl")
    assert fingerprints(inbox)["2026-11-20"] != first["2026-11-20"]
    assert partition_paths(inbox, "2026-11-20") == [str(inbox / "2026-11-20")]
    with pytest.raises(FileNotFoundError, match="personahub inbox add"):
        partition_paths(inbox, "2026-11-21")
    with pytest.raises(ValueError, match="not a date"):
        register(inbox / "2026-11-20" / "a.jsonl", inbox, "yesterday")


def tick(inbox, cursor=None) -> tuple[list[dg.RunRequest], str | None]:
    """One evaluation of the inbox sensor: its run requests and its new cursor (the lake resource
    closes what it opened when the context ends)."""
    with dg.build_sensor_context(
        cursor=cursor,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"lake": LakeResource(path=str(inbox.parent / "lake"), inbox=str(inbox))},
    ) as ctx:
        return run_requests(inbox_sensor(ctx)), ctx.cursor


def run_requests(result) -> list[dg.RunRequest]:
    return [r for r in result if isinstance(r, dg.RunRequest)]


def test_the_sensor_runs_new_and_changed_days_once(tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "2026-11-20")
    drop(inbox, "2026-11-21")
    first, cursor = tick(inbox)
    assert [(r.partition_key, r.tags["trigger"]) for r in first] == [
        ("2026-11-20", "inbox"),
        ("2026-11-21", "inbox"),
    ]
    assert tick(inbox, cursor)[0] == []  # nothing new: nothing to run
    time.sleep(0.01)
    drop(inbox, "2026-11-21", "more.jsonl")
    again, _ = tick(inbox, cursor)
    assert [r.partition_key for r in again] == ["2026-11-21"] and again[0].run_key != first[1].run_key


def test_the_sensor_skips_days_outside_the_partitions(tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "1999-01-01")
    assert tick(inbox)[0] == []


def test_the_nightly_schedule_runs_the_newest_day_with_input(tmp_path):
    inbox = tmp_path / "inbox"
    lake = LakeResource(path=str(tmp_path / "lake"), inbox=str(inbox))
    tick = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.UTC)

    def evaluate():
        with dg.build_schedule_context(
            scheduled_execution_time=tick, instance=dg.DagsterInstance.ephemeral(), resources={"lake": lake}
        ) as ctx:
            return nightly_hub_growth(ctx)

    assert evaluate().skip_message.startswith("no input")
    drop(inbox, "2026-11-20")
    drop(inbox, "2026-11-21")
    drop(inbox, "2026-11-23")  # after the tick's date: not yet
    [request] = evaluate()  # one run for the day (one per shard when days are sharded)
    assert request.partition_key == "2026-11-21" and request.run_key == "nightly-2026-11-21"
    assert nightly_hub_growth.cron_schedule == os.environ.get("PERSONAHUB_NIGHTLY_CRON", "0 2 * * *")


def test_the_weekly_maintenance_job_compacts_and_vacuums_the_lake(tmp_path):
    from personahub_dagster.core.lake.schemas import rows_frame
    from personahub_dagster.core.lake.tables import Lake
    from personahub_dagster.defs.lake.maintenance import lake_maintenance, weekly_lake_maintenance

    lake = Lake(tmp_path / "lake")
    for i in range(3):  # a slice re-materialized three times: two files only old versions read
        rows = [{"stage": "s", "input_id": f"{i}-{j}", "partition": "2026-11-20"} for j in range(5)]
        lake.write("rejects", rows_frame("rejects", rows), producer="s", partition="2026-11-20")
    result = lake_maintenance.execute_in_process(
        run_config={"ops": {"optimize_lake": {"config": {"retention_hours": 0}}}},
        resources={"lake": LakeResource(path=str(tmp_path / "lake"), inbox=str(tmp_path / "inbox"))},
    )
    assert result.success
    [table] = [r for r in result.output_for_node("optimize_lake") if r["table"] == "rejects"]
    assert table["vacuumed"] == 2 and table["files_after"] == 1
    assert sorted(Lake(tmp_path / "lake").read("rejects")["input_id"]) == [f"2-{j}" for j in range(5)]
    assert weekly_lake_maintenance.default_status == dg.DefaultScheduleStatus.STOPPED
