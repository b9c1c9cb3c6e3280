"""Shards: one day's inbox split into N independent runs, for days too big for one machine.

A text belongs to shard ``int(id) mod N`` (its id is a hash of its content, so the split is even, stable
and needs no coordination: every shard run reads the day's inbox and keeps its own texts). Every row a
shard makes carries the lake partition ``<day>.s<shard>`` — e.g. ``2026-03-01.s01`` — so that:

* each shard's run replaces only its own slice of each table (slices are keyed by partition);
* name order is day order, then shard order (``2026-03-01`` < ``2026-03-01.s00`` < ``…s01`` <
  ``2026-03-02``), which is the order the hub grows in — a shard's personas are checked against every
  earlier day and every lower shard of its day, exactly as one run over the day would be if it took
  the shards one after the other;
* ids and lineage are unchanged (a text's, persona's and generation's ids never include the partition).

Shard numbers are zero-padded to the width of ``N - 1`` so that name order stays numeric order.
"""

from __future__ import annotations

SEPARATOR = ".s"


def shard_names(shards: int) -> list[str]:
    """``["0", "1"]`` for 2 shards, ``["00", …, "11"]`` for 12."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    width = len(str(shards - 1))
    return [str(i).zfill(width) for i in range(shards)]


def shard_partition(day: str, shard: str) -> str:
    return f"{day}{SEPARATOR}{shard}"


def day_of(partition: str) -> str:
    """The calendar day of a lake partition (sharded or not)."""
    return partition.split(SEPARATOR, 1)[0]


def shard_of(text_id: str, shards: int) -> int:
    """The shard a text belongs to: its content hash, taken as a number, modulo ``shards``."""
    return int(text_id.rpartition("-")[2], 16) % shards


def shard_index(partition: str) -> int | None:
    """The shard number of a sharded lake partition; None for a whole day."""
    _, sep, shard = partition.partition(SEPARATOR)
    return int(shard) if sep else None


def keep_shard(texts, partition: str, shards: int):
    """The rows of ``texts`` (a frame with ``text_id``) that belong to ``partition``'s shard."""
    index = shard_index(partition)
    if index is None:
        return texts
    return texts.filter(
        texts["text_id"].map_elements(lambda t: shard_of(t, shards), return_dtype=int) == index
    )
