"""Running it every day: a nightly schedule that grows the hub by the newest day, and a sensor that
runs a day as soon as its files land in the inbox. Both start stopped: turn them on in the UI
(Automation) or with ``dagster schedule start`` / ``dagster sensor start``.

* ``nightly_hub_growth`` — at ``PERSONAHUB_NIGHTLY_CRON`` (default ``0 2 * * *``, 02:00) in
  ``PERSONAHUB_TIMEZONE``: the whole pipeline for the newest inbox day not after the tick's date.
  The run key is the day, so a day already run by the schedule is not run again. With shards
  (``PERSONAHUB_SHARDS``), both request one run per shard of the day.
* ``inbox_sensor`` — every 30 s: a run for each day folder that is new or changed since the sensor
  last looked (the cursor keeps each day's fingerprint: file names, sizes, modification times).
"""

import json

import dagster as dg

from personahub_dagster.core.config.settings import settings
from personahub_dagster.core.stages.inbox import fingerprints
from personahub_dagster.defs.jobs import pipeline_job
from personahub_dagster.defs.partitions import TIMEZONE, days, run_keys
from personahub_dagster.defs.resources import BUDGET_TAG, LakeResource

NIGHTLY_CRON = settings().nightly_cron


def _valid(day: str) -> bool:
    return days.has_partition_key(day)


@dg.schedule(
    job=pipeline_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Grow the hub by the newest inbox day, through to the exported datasets.",
)
def nightly_hub_growth(context: dg.ScheduleEvaluationContext, lake: LakeResource):
    today = context.scheduled_execution_time.strftime("%Y-%m-%d")
    inbox_days = [d for d in fingerprints(lake.inbox) if d <= today and _valid(d)]
    if not inbox_days:
        return dg.SkipReason(f"no input in {lake.inbox} up to {today}")
    newest = inbox_days[-1]
    tags = {"trigger": "nightly", BUDGET_TAG: f"nightly-{newest}"}  # the night's shards: one budget
    return [dg.RunRequest(run_key=f"nightly-{key}", partition_key=key, tags=tags) for key in run_keys(newest)]


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Run a day's partition when files for it land in (or change in) the inbox.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = fingerprints(lake.inbox)
    changed = [d for d, fp in current.items() if seen.get(d) != fp]
    for day in changed:
        if not _valid(day):
            context.log.warning(f"inbox/{day} is outside the partitions ({days.start:%Y-%m-%d} on)")
            continue
        for key in run_keys(day):
            yield dg.RunRequest(
                run_key=f"inbox-{key}-{current[day]}", partition_key=key, tags={"trigger": "inbox"}
            )
    context.update_cursor(json.dumps(current, sort_keys=True))
    if not changed:
        yield dg.SkipReason("no new or changed day folders in the inbox")
