"""Writing the lake: a stage replaces its own slice of a day (``partition`` and ``_producer``) in one
Delta commit, retried when another writer's commit conflicts; a table gains the columns a newer schema
adds (an older lake reads them as null)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

import polars as pl

from personahub_dagster.core.lake.schemas import PRODUCER, SAFE_NAME, SCHEMAS, conform

_COMMIT_ATTEMPTS = 12


class Writes:
    """Commits of :class:`~personahub_dagster.core.lake.tables.Lake` (a base of it)."""

    def write(self, table: str, df: pl.DataFrame, *, producer: str, partition: str) -> int:
        """Replace the (table, producer, partition) slice with ``df`` in one commit; its Delta version.

        Whole-slice replacement makes every materialization idempotent: re-running a stage for a
        partition rewrites the same rows instead of appending copies."""
        return self.write_many({table: df}, producer=producer, partition=partition)[table]

    def write_many(
        self, frames: Mapping[str, pl.DataFrame], *, producer: str, partition: str
    ) -> dict[str, int]:
        """:meth:`write` for several tables of one stage (rows and rejects): one commit per table."""
        for name in (producer, partition):
            if not SAFE_NAME.match(name or ""):
                raise ValueError(
                    f"invalid producer/partition name: {name!r} (letters, digits, '_', '.', '-')"
                )
        frames = {t: conform(t, df) for t, df in frames.items()}  # refuse bad frames before any commit
        self.check()
        versions = {t: self._replace(t, df, producer, partition) for t, df in frames.items()}
        self._mirror_call_journal()
        self.committed.update(versions)
        return versions

    def _replace(
        self, table: str, rows: pl.DataFrame | Callable[[], pl.DataFrame], producer: str, partition: str
    ) -> int:
        """Overwrite one slice; ``rows`` may be a function that reads them, called again before each
        retry of a commit that lost to another writer (whose commit may hold newer rows)."""
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        by_day = "partition" in SCHEMAS[table]

        def arrow():
            df = rows() if callable(rows) else rows
            if by_day:
                df = df.with_columns(pl.col("partition").fill_null(partition))
                stray = df.filter(pl.col("partition") != partition)["partition"].unique().to_list()
                if stray:
                    raise ValueError(
                        f"{table}: rows of partitions {stray} in a write to partition {partition}"
                    )
            return df.with_columns(pl.lit(producer).alias(PRODUCER)).to_arrow()

        data = arrow()
        predicate = f"{PRODUCER} = '{producer}'" + (f" AND partition = '{partition}'" if by_day else "")
        info = {
            "personahub.producer": producer,
            "personahub.partition": partition,
            **self._commit_info,
        }
        partition_by = ["partition", PRODUCER] if by_day else [PRODUCER]
        for attempt in range(_COMMIT_ATTEMPTS):
            # The cached table, brought up to date. A table is created empty first (a no-op when another
            # writer got there): a slice written in the creating commit would be a blind append, and two
            # of those into one slice would both survive, where two overwrites of an existing table
            # conflict and one is retried.
            if attempt and callable(rows):
                data = arrow()
            dt = self._open(table) or self._create(table, data.schema, partition_by)
            self._evolve(dt, table, data.schema)
            try:
                write_deltalake(
                    dt,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    writer_properties=writer_properties(),
                    commit_properties=commit_properties(info),
                )
                return dt.version()  # the table object now stands at this commit
            except CommitFailedError:  # another writer committed a conflicting change first: redo
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _evolve(self, dt, table: str, schema) -> None:
        """Add the columns a newer release gave ``table`` (``llm_calls.mode``) to a table an older
        one made: old files read them as null."""
        import pyarrow as pa
        from deltalake import Field
        from deltalake import Schema as DeltaSchema

        have = {f.name for f in dt.schema().fields}
        new = [f for f in schema if f.name not in have]
        if new:
            fields = DeltaSchema.from_arrow(pa.schema(new)).fields
            dt.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
            dt.update_incremental()

    def _create(self, table: str, schema, partition_by: list[str]):
        from deltalake import DeltaTable

        DeltaTable.create(
            self.table_uri(table),
            schema,
            mode="ignore",
            partition_by=partition_by,
            storage_options=dict(self.location.options),
        )
        return self._open(table)


def writer_properties():
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD")


def commit_properties(info: Mapping[str, str]):
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=dict(info))
