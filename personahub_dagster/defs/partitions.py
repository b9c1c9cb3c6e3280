"""Partitions: one per day, and optionally N shards per day.

Raw text arrives as one partition per day (``inbox/YYYY-MM-DD/``), and every downstream asset is
partitioned the same way, so a day's run reads that day's data and the hub grows by one partition.

Set from the environment when the definitions load:

* ``PERSONAHUB_START_DATE`` — first partition (default 2026-01-01);
* ``PERSONAHUB_TIMEZONE`` — the partitions' and the nightly schedule's timezone (default UTC);
* ``PERSONAHUB_SHARDS`` — split each day into N shards (default 1: plain daily partitions). With N > 1
  every asset is partitioned by day × shard (a ``MultiPartitionsDefinition``), each (day, shard) is an
  independent run that a run launcher can place on any machine, and a backfill of many days fans out
  over the run workers. The shard dimension is static, not dynamic, because a text's shard is a pure
  function of its id and N (:mod:`personahub_dagster.core.config.shards`): every run agrees on it without
  asking anyone, and a shard set that could change between runs would move texts between shards. Pick
  N before the first day; changing it later gives new days the new split and leaves old ones as run.

Today's partition exists already (``end_offset=1``), so a file dropped in today's folder can be run
by the inbox sensor at once; the nightly schedule runs the newest day that has input.
"""

import dagster as dg

from personahub_dagster.core.config.settings import settings
from personahub_dagster.core.config.shards import shard_names, shard_partition

_SETTINGS = settings()
START_DATE = _SETTINGS.start_date
TIMEZONE = _SETTINGS.timezone
SHARDS = _SETTINGS.shards

days = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone=TIMEZONE, end_offset=1)
pipeline_partitions: dg.PartitionsDefinition = (
    days
    if SHARDS == 1
    else dg.MultiPartitionsDefinition(
        {"day": days, "shard": dg.StaticPartitionsDefinition(shard_names(SHARDS))}
    )
)


def lake_partition(key: str | dg.MultiPartitionKey) -> str:
    """The lake partition of a partition key: the day, or ``<day>.s<shard>`` when days are sharded."""
    if isinstance(key, dg.MultiPartitionKey):
        return shard_partition(key.keys_by_dimension["day"], key.keys_by_dimension["shard"])
    return key


def partition_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The lake partition a run writes."""
    return lake_partition(context.partition_key)


def run_keys(day: str) -> list[str | dg.MultiPartitionKey]:
    """The partition keys of one day's runs: the day, or one per shard."""
    if SHARDS == 1:
        return [day]
    return [dg.MultiPartitionKey({"day": day, "shard": s}) for s in shard_names(SHARDS)]
