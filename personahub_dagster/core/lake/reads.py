"""Reading the lake: a private in-memory DuckDB per query with one view per table; a local lake's
views read the version's Parquet files natively, a remote lake's scan deltalake's Arrow datasets; a
query for some days opens only those days' files."""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import polars as pl

from personahub_dagster.core.lake.metering import Metered
from personahub_dagster.core.lake.schemas import PRODUCER, SCHEMAS, conform, sql_type
from personahub_dagster.core.lake.time_travel import AsOf


class Reads:
    """Queries of :class:`~personahub_dagster.core.lake.tables.Lake` (a base of it)."""

    def _files_meta(self, table: str) -> pl.DataFrame:
        """The table's live files as the Delta log records them (path, partition values, record
        counts): metadata only, no data file is opened. Empty when the table does not exist."""
        dt = self._open(table)
        return pl.DataFrame(dt.get_add_actions(flatten=True)) if dt is not None else pl.DataFrame()

    def connect(
        self,
        as_of: AsOf | None = None,
        tables: Iterable[str] | None = None,
        partitions: Iterable[str] | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """A private in-memory DuckDB with one view per table (or per table of ``tables``), as of now or
        ``as_of``; takes no lock and sees one committed version of each table. With ``partitions``,
        the views of daily tables hold only those days (files of other days are never opened). The
        rows its queries scan are counted (:func:`lake_reads`)."""
        con = Metered(duckdb.connect())
        con.execute("SET enable_profiling = 'no_output'")
        days = None if partitions is None else sorted(set(partitions))
        for table in tables or SCHEMAS:
            self._create_view(con, table, self._open(table, as_of), days)
        return con  # type: ignore[return-value] - a DuckDB connection, metered

    def _create_view(
        self, con: duckdb.DuckDBPyConnection, table: str, dt, days: list[str] | None = None
    ) -> None:
        days = days if days is not None and "partition" in SCHEMAS[table] else None
        files = [] if dt is None else dt.file_uris(file_pruning_predicate=_day_filter(days))
        if not files:
            cols = ", ".join(f'CAST(NULL AS {sql_type(t)}) AS "{c}"' for c, t in SCHEMAS[table].items())
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} WHERE false")
        elif self.is_local:
            self._native_view(con, table, files, _columns(table, dt))
        else:
            self._arrow_view(con, table, dt, days)

    @staticmethod
    def _native_view(con: duckdb.DuckDBPyConnection, table: str, files: list[str], columns: str) -> None:
        """DuckDB's own Parquet reader over the version's files (day and stage from their paths)."""
        hive = ", ".join(
            f"'{c}': VARCHAR" for c in ("partition", PRODUCER) if c == PRODUCER or c in SCHEMAS[table]
        )
        listing = "[" + ", ".join(f"'{_sql_quote(f)}'" for f in files) + "]"
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT {columns} FROM read_parquet({listing}, "
            f"hive_partitioning = true, hive_types = {{{hive}}}, union_by_name = true)"
        )

    @staticmethod
    def _arrow_view(con: duckdb.DuckDBPyConnection, table: str, dt, days: list[str] | None) -> None:
        """deltalake's Arrow dataset of the version (reads through the object store; DuckDB pushes
        projections and filters into it); with ``days``, only those days' files."""
        con.register(f"_delta_{table}", dt.to_pyarrow_dataset(file_pruning_predicate=_day_filter(days)))
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT {_columns(table, dt)} FROM _delta_{table}")

    def read(
        self,
        table: str,
        where: str | None = None,
        params: Iterable[object] = (),
        as_of: AsOf | None = None,
        partitions: Iterable[str] | None = None,
    ) -> pl.DataFrame:
        """All rows of ``table`` (optionally filtered by a SQL ``where`` clause, and to the days in
        ``partitions`` — whose files alone are opened) as a polars frame."""
        if table not in SCHEMAS:
            raise KeyError(table)
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
        with self.connect(as_of, tables=[table], partitions=partitions) as con:
            return conform(table, con.sql(sql, params=list(params)).pl())

    def ingested_before(self, text_ids: list[str], day: str) -> dict[str, str]:
        """Which of ``text_ids`` an earlier day (any partition not of ``day``: its shards are not
        "earlier") already ingested, and where. A semi-join inside DuckDB: only the id column is
        scanned, and only the day's ids are held in memory — not every id ever ingested."""
        if not text_ids:
            return {}
        with self.connect(tables=["source_texts"]) as con:
            con.register("day_ids", pl.DataFrame({"text_id": text_ids}).to_arrow())
            return dict(
                con.execute(
                    "SELECT text_id, min(partition) FROM source_texts SEMI JOIN day_ids USING (text_id) "
                    "WHERE NOT starts_with(partition, ?) GROUP BY 1",
                    [day],
                ).fetchall()
            )

    def counts(self) -> dict[str, int]:
        """Rows per table, from the Delta log's per-file record counts: no data file is opened."""
        out = {}
        for table in SCHEMAS:
            actions = self._files_meta(table)
            out[table] = int(actions["num_records"].sum()) if actions.height else 0
        return out


def _day_filter(days: list[str] | None) -> list[tuple[str, str, object]] | None:
    """A Delta partition filter for ``days`` (None: every file)."""
    return None if days is None else [("partition", "in", days or ["\x00"])]


def _columns(table: str, dt) -> str:
    """The table's columns; one a newer release added that the table has not got yet (an older
    lake's ``llm_calls.mode``, until its next write adds it) reads as null."""
    have = {f.name for f in dt.schema().fields}
    return ", ".join(
        f'"{c}"' if c in have or c == "partition" else f'CAST(NULL AS {sql_type(t)}) AS "{c}"'
        for c, t in SCHEMAS[table].items()
    )


def _sql_quote(text: str) -> str:
    return text.replace("'", "''")
