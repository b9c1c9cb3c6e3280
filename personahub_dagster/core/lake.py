"""The lake: Parquet files per table and partition, a DuckDB catalog of views over them.

Layout under the lake root::

    tables/<table>/<producer>/<partition>.parquet   one file per (table, writing stage, partition)
    llm_cache.sqlite                                 the LLM response cache and call journal
    personahub.duckdb                                views over tables/, for `duckdb lake/personahub.duckdb`

Why this shape: DuckDB allows one writer per database file, and Dagster runs steps in separate
processes (the "Could not set lock" failures other DuckDB-backed pipelines hit). Here no process ever
writes into a shared DuckDB file: each stage writes whole Parquet files with temp-file + fsync +
rename (atomic on POSIX, so a killed run leaves the previous file or the new one, never half of one),
and the catalog is a small file of views that is itself rebuilt in a temp file and renamed into place.
Readers get a private in-memory DuckDB with the same views, so they never take a lock either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import duckdb
import polars as pl
import pyarrow.parquet as pq

from personahub_dagster.core.ids import kind_of
from personahub_dagster.core.llm_cache import ResponseCache

TS = pl.Datetime("us", "UTC")
_UMASK = os.umask(0)
os.umask(_UMASK)

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "source_texts": {
        "text_id": pl.Utf8,
        "partition": pl.Utf8,
        "source_uri": pl.Utf8,
        "doc_id": pl.Utf8,
        "text": pl.Utf8,
        "n_chars": pl.Int64,
        "ingested_at": TS,
    },
    "personas": {
        "persona_id": pl.Utf8,
        "persona": pl.Utf8,
        "occupation": pl.Utf8,
        "domain": pl.Utf8,
        "expertise_level": pl.Utf8,
        "method": pl.Utf8,
        "perspective": pl.Utf8,
        "source_text_id": pl.Utf8,
        "parent_persona_id": pl.Utf8,
        "relation": pl.Utf8,
        "hop": pl.Int32,
        "text_truncated": pl.Boolean,
        "model": pl.Utf8,
        "prompt_hash": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "hub": {
        "persona_id": pl.Utf8,
        "persona": pl.Utf8,
        "method": pl.Utf8,
        "hop": pl.Int32,
        "source_text_id": pl.Utf8,
        "parent_persona_id": pl.Utf8,
        "dup_of": pl.Utf8,
        "dup_reason": pl.Utf8,
        "similarity": pl.Float64,
        "nearest_similarity": pl.Float64,
        "partition": pl.Utf8,
        "created_at": TS,
    },
    "generations": {
        "row_id": pl.Utf8,
        "data_type": pl.Utf8,
        "description": pl.Utf8,
        "prompting_mode": pl.Utf8,
        "constraints": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "prompt": pl.Utf8,
        "output": pl.Utf8,
        "model": pl.Utf8,
        "prompt_hash": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "math_checks": {
        "row_id": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "n_solutions": pl.Int32,
        "agreeing": pl.Int32,
        "agreement": pl.Boolean,
        "answer": pl.Utf8,
        "solutions": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "rejects": {
        "stage": pl.Utf8,
        "input_id": pl.Utf8,
        "request_hash": pl.Utf8,
        "raw_output": pl.Utf8,
        "reason": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "contamination": {
        "row_id": pl.Utf8,
        "benchmark": pl.Utf8,
        "flagged": pl.Boolean,
        "reason": pl.Utf8,
        "ngram_hits": pl.Int64,
        "similarity": pl.Float64,
        "benchmark_item": pl.Int64,
        "benchmark_text": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "diversity_pairs": {
        "band": pl.Float64,
        "persona_a": pl.Utf8,
        "persona_b": pl.Utf8,
        "persona_similarity": pl.Float64,
        "problem_a": pl.Utf8,
        "problem_b": pl.Utf8,
        "problem_similarity": pl.Float64,
        "problems_valid": pl.Boolean,
        "model": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "llm_calls": ResponseCache.CALL_SCHEMA,
}

_SQL_TYPES = {
    pl.Utf8: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Float64: "DOUBLE",
    pl.Boolean: "BOOLEAN",
}


def _sql_type(dtype: pl.DataType) -> str:
    return "TIMESTAMPTZ" if isinstance(dtype, pl.Datetime) else _SQL_TYPES[dtype]


def now_utc() -> datetime:
    return datetime.now(UTC)


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame to the table's schema: fill absent columns with nulls, refuse unknown ones."""
    schema = SCHEMAS[table]
    extra = set(df.columns) - set(schema)
    if extra:
        raise ValueError(f"{table}: columns not in the schema: {sorted(extra)}")
    return df.select(
        [pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()]
    )


def rows_frame(table: str, rows: list[dict]) -> pl.DataFrame:
    """A frame in ``table``'s schema from row dicts (missing keys become nulls)."""
    return pl.DataFrame(rows, schema=SCHEMAS[table])


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temp file + fsync + rename: readers see the old file or the complete new
    one, never a part; a crash leaves at most a hidden temp file (swept later)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should read like any other
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(df: pl.DataFrame, path: Path) -> None:
    atomic_write(path, lambda fh: df.write_parquet(fh, compression="zstd", statistics=True))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LineageStep:
    """One link of a lineage chain, from a generated row back to the text it came from."""

    kind: str  # generation | persona | text
    id: str
    text: str
    detail: Mapping[str, object]


class Lake:
    """One lake directory. Cheap to construct; opens nothing until asked."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def catalog_path(self) -> Path:
        return self.root / "personahub.duckdb"

    @property
    def cache_path(self) -> Path:
        return self.root / "llm_cache.sqlite"

    @contextlib.contextmanager
    def lock(
        self, name: str, timeout_s: float = 6 * 3600, on_wait: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Hold an exclusive, cross-process lock on one part of the lake (a file lock under ``locks/``).

        Slice writes need none (each is one atomic rename); what needs one is a read-modify-write
        over shared state — the hub's dedup state, grown by whichever run comes next. ``on_wait`` is
        called once if another run holds the lock, so the waiting run can say why it is idle."""
        from filelock import FileLock, Timeout

        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait:
                on_wait()
            lock.acquire(timeout=timeout_s)
        try:
            yield
        finally:
            lock.release()

    def table_path(self, table: str, producer: str, partition: str) -> Path:
        if table not in SCHEMAS:
            raise KeyError(f"unknown table {table!r}; known: {sorted(SCHEMAS)}")
        for name in (producer, partition):
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"invalid producer/partition name: {name!r}")
        return self.tables_dir / table / producer / f"{partition}.parquet"

    def _glob(self, table: str) -> str:
        return str(self.tables_dir / table / "*" / "*.parquet")

    def _has_files(self, table: str) -> bool:
        return any((self.tables_dir / table).glob("*/*.parquet"))

    # -- writing -------------------------------------------------------------------------------
    def write(self, table: str, df: pl.DataFrame, *, producer: str, partition: str) -> Path:
        """Replace the (table, producer, partition) slice with ``df``, atomically; then refresh the catalog.

        Whole-slice replacement makes every materialization idempotent: re-running a stage for a
        partition rewrites the same rows instead of appending copies.
        """
        return self.write_many({table: df}, producer=producer, partition=partition)[table]

    def write_many(
        self, frames: Mapping[str, pl.DataFrame], *, producer: str, partition: str
    ) -> dict[str, Path]:
        """:meth:`write` for several tables of one stage (rows and rejects), publishing the catalog once."""
        paths = {t: self.table_path(t, producer, partition) for t in frames}
        for table, df in frames.items():
            atomic_write_parquet(conform(table, df), paths[table])
        self.publish()
        return paths

    def publish(self) -> None:
        """Rebuild personahub.duckdb (views over every table) in a temp file and rename it into place.

        The call journal lives in SQLite (safe for many concurrent writers); it is mirrored to Parquet
        here so that SQL over the lake sees ``llm_calls`` like every other table.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_temp_files()
        self._mirror_call_journal()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".catalog-", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)  # duckdb wants to create the file itself
        try:
            con = duckdb.connect(tmp)
            try:
                self._create_views(con)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, self.catalog_path)
        finally:
            Path(tmp).unlink(missing_ok=True)
            Path(tmp + ".wal").unlink(missing_ok=True)

    def _mirror_call_journal(self) -> None:
        """Copy the SQLite call journal to ``tables/llm_calls`` — only when it grew since the last copy
        (stages without LLM calls, and re-runs served from the cache, skip the O(journal) export)."""
        if not self.cache_path.exists():
            return
        journal = ResponseCache(self.cache_path)
        mirror = self.table_path("llm_calls", "gateway", "all")
        if mirror.exists() and pq.ParquetFile(mirror).metadata.num_rows == journal.journal_size():
            return
        atomic_write_parquet(conform("llm_calls", journal.calls_frame()), mirror)

    def _sweep_temp_files(self, older_than_s: float = 3600.0) -> None:
        """Remove temp files that a killed writer left behind (never read: they do not match the globs).
        Only old ones, so that another process's write in progress is left alone."""
        cutoff = time.time() - older_than_s
        for tmp in [*self.root.glob(".catalog-*.tmp*"), *self.tables_dir.glob("*/*/.*.tmp")]:
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def _create_views(self, con: duckdb.DuckDBPyConnection) -> None:
        for table, schema in SCHEMAS.items():
            if self._has_files(table):
                body = f"SELECT * FROM read_parquet('{self._glob(table)}', union_by_name = true)"
            else:
                cols = ", ".join(f"CAST(NULL AS {_sql_type(t)}) AS {c}" for c, t in schema.items())
                body = f"SELECT {cols} WHERE false"
            con.execute(f"CREATE OR REPLACE VIEW {table} AS {body}")

    # -- reading -------------------------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        """A private in-memory DuckDB with one view per table; takes no lock on the lake."""
        con = duckdb.connect()
        self._create_views(con)
        return con

    def read(self, table: str, where: str | None = None, params: Iterable[object] = ()) -> pl.DataFrame:
        """All rows of ``table`` (optionally filtered by a SQL ``where`` clause) as a polars frame."""
        if table not in SCHEMAS:
            raise KeyError(table)
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
        with self.connect() as con:
            return conform(table, con.sql(sql, params=list(params)).pl())

    def counts(self) -> dict[str, int]:
        with self.connect() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SCHEMAS}

    # -- lineage -------------------------------------------------------------------------------
    def lineage(self, entity_id: str) -> list[LineageStep]:
        """The chain from a generated row (or a persona) back through parent personas to its source text.

        One recursive query walks ``parent_persona_id`` links; relation-derived personas reach their
        Text-to-Persona root in at most ``hop`` steps.
        """
        steps: list[LineageStep] = []
        kind = kind_of(entity_id)
        with self.connect() as con:
            persona_id = entity_id
            if kind == "generation":
                row = con.execute(
                    "SELECT row_id, data_type, prompting_mode, persona_id, output, model "
                    "FROM generations WHERE row_id = ?",
                    [entity_id],
                ).fetchone()
                if row is None:
                    raise KeyError(f"no generated row {entity_id}")
                steps.append(
                    LineageStep(
                        "generation",
                        row[0],
                        row[4],
                        {"data_type": row[1], "prompting_mode": row[2], "model": row[5]},
                    )
                )
                persona_id = row[3]
            elif kind == "text":
                return self._text_step(con, entity_id)
            elif kind != "persona":
                raise KeyError(f"not a lake id: {entity_id!r}")
            chain = con.execute(
                """
                WITH RECURSIVE chain(persona_id, depth) AS (
                    SELECT ?::VARCHAR, 0
                    UNION ALL
                    SELECT p.parent_persona_id, c.depth + 1
                    FROM chain c JOIN personas p ON p.persona_id = c.persona_id
                    WHERE p.parent_persona_id IS NOT NULL AND c.depth < 64
                )
                SELECT p.persona_id, p.persona, p.method, p.perspective, p.relation, p.hop,
                       p.source_text_id, p.model
                FROM chain c JOIN personas p USING (persona_id)
                ORDER BY c.depth
                """,
                [persona_id],
            ).fetchall()
            if not chain:
                raise KeyError(f"no persona {persona_id} in the lake")
            for pid, text, method, perspective, relation, hop, _src, model in chain:
                detail = {"method": method, "hop": hop, "model": model}
                detail.update(
                    {"relation": relation} if method == "relation" else {"perspective": perspective}
                )
                steps.append(LineageStep("persona", pid, text, detail))
            root = chain[-1]
            if root[2] != "text":
                raise KeyError(f"persona chain of {entity_id} is broken at {root[0]}")
            steps.extend(self._text_step(con, root[6]))
        return steps

    def broken_lineage(self, partition: str | None = None) -> list[str]:
        """Generated rows (of ``partition``, or all) whose chain does not reach a source text: a persona
        or parent persona missing from the lake, a chain whose root is not a Text-to-Persona persona,
        or a source text that is not there. Empty when every row walks back — the asset check."""
        where = "WHERE g.partition = ?" if partition is not None else ""
        sql = f"""
            WITH RECURSIVE chain(row_id, persona_id, depth) AS (
                SELECT g.row_id, g.persona_id, 0 FROM generations g {where}
                UNION ALL
                SELECT c.row_id, p.parent_persona_id, c.depth + 1
                FROM chain c JOIN personas p ON p.persona_id = c.persona_id
                WHERE p.parent_persona_id IS NOT NULL AND c.depth < 64
            ),
            steps AS (
                SELECT c.row_id, c.depth, p.persona_id IS NOT NULL AS found, p.method, p.source_text_id
                FROM chain c LEFT JOIN (SELECT DISTINCT persona_id, method, source_text_id FROM personas) p
                  USING (persona_id)
            ),
            roots AS (
                SELECT row_id, arg_max(method, depth) AS method, arg_max(source_text_id, depth) AS text_id,
                       bool_and(found) AS all_found
                FROM steps GROUP BY row_id
            )
            SELECT r.row_id FROM roots r JOIN generations g USING (row_id)
            WHERE NOT r.all_found OR r.method IS DISTINCT FROM 'text'
               OR r.text_id IS DISTINCT FROM g.source_text_id
               OR NOT EXISTS (SELECT 1 FROM source_texts t WHERE t.text_id = r.text_id)
            ORDER BY 1
        """
        with self.connect() as con:
            return [r[0] for r in con.execute(sql, [partition] if partition is not None else []).fetchall()]

    @staticmethod
    def _text_step(con: duckdb.DuckDBPyConnection, text_id: str) -> list[LineageStep]:
        row = con.execute(
            "SELECT text_id, text, source_uri, doc_id, partition FROM source_texts WHERE text_id = ?",
            [text_id],
        ).fetchone()
        if row is None:
            raise KeyError(f"no source text {text_id}")
        return [
            LineageStep("text", row[0], row[1], {"source_uri": row[2], "doc_id": row[3], "partition": row[4]})
        ]
