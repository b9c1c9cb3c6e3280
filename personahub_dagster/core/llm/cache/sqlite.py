"""Persistent LLM response cache and call journal: SQLite by default, Postgres for many workers.

Why SQLite and not DuckDB: the cache is written one response at a time, from several processes at
once (Dagster's multiprocess executor, concurrent runs). SQLite in WAL mode takes concurrent writers
with a busy timeout; DuckDB allows a single writer per file. Each response is committed the moment it
arrives, so a crash loses at most the calls in flight and a re-run pays for nothing twice.

Workers on several machines share one Postgres cache instead (``PERSONAHUB_CACHE=postgresql://…``,
:mod:`.postgres`); :func:`~.backends.open_cache` picks the backend from the target. Both keep the *first*
answer stored for a request: a second worker that asked the same request at the same moment paid for
it too (at most twice, never more), but its answer is not stored over the first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from personahub_dagster.core.llm.cache import ledger
from personahub_dagster.core.llm.cache.ledger import Admission, Hold, Tx
from personahub_dagster.core.llm.cache.records import (
    CALL_COLUMNS,
    CALL_SCHEMA,
    CachedResponse,
    CallRecord,
    calls_frame,
    responses_ddl,
)

_DDL = (
    responses_ddl("REAL")
    + """
CREATE TABLE IF NOT EXISTS llm_calls (
    request_hash TEXT NOT NULL,
    stage TEXT,
    model TEXT,
    attempt INTEGER,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    latency_s REAL,
    status TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    run_id TEXT,
    mode TEXT
);
CREATE INDEX IF NOT EXISTS llm_calls_run ON llm_calls (run_id);
"""
    + ledger.ledger_ddl("REAL")
    + ledger.rate_ddl("REAL")
)


class ResponseCache:
    """Key-value store of responses by request hash, plus an append-only journal of provider calls."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            columns = {r[1] for r in con.execute("PRAGMA table_info(llm_calls)")}
            for column in ("run_id", "mode"):  # a cache written before runs (or modes) were journaled
                if columns and column not in columns:
                    con.execute(f"ALTER TABLE llm_calls ADD COLUMN {column} TEXT")
            con.executescript(_DDL)

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get(self, request_hash: str) -> CachedResponse | None:
        row = (
            self._conn()
            .execute(
                "SELECT content, finish_reason, prompt_tokens, completion_tokens FROM responses "
                "WHERE request_hash = ?",
                (request_hash,),
            )
            .fetchone()
        )
        return CachedResponse(*row) if row else None

    def get_many(self, hashes: list[str]) -> dict[str, CachedResponse]:
        """Bulk lookup: one query per 500 keys instead of one per key."""
        found: dict[str, CachedResponse] = {}
        con = self._conn()
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for h, *rest in con.execute(
                "SELECT request_hash, content, finish_reason, prompt_tokens, completion_tokens "
                f"FROM responses WHERE request_hash IN ({marks})",
                chunk,
            ):
                found[h] = CachedResponse(*rest)
        return found

    def put_many(
        self,
        responses: list[tuple[str, str, CachedResponse]],
        calls: list[CallRecord],
        hold: Hold | None = None,
    ) -> None:
        """Store several responses and journal several calls in one transaction (the gateway's group
        commit: one fsync-free WAL commit per event-loop turn instead of one per answer). The same
        transaction adds the calls to their runs' spend and sets the gateway's ``hold`` to what it
        still has in flight, so a run's books never show a call both spent and held, or neither."""
        now = time.time()
        with self.transaction() as tx:
            con = self._conn()
            ledger.ensure_spend(tx, ledger.spend_keys(calls, hold))
            con.executemany(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (h, model, r.content, r.finish_reason, r.prompt_tokens, r.completion_tokens, now)
                    for h, model, r in responses
                ],
            )
            con.executemany(
                f"INSERT INTO llm_calls ({CALL_COLUMNS}) VALUES ({', '.join('?' * len(CALL_SCHEMA))})",
                [c.row(now) for c in calls],
            )
            ledger.book(tx, calls, hold)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction for a read-modify-write of shared books (the run budget, the shared
        rate limit): SQLite takes its write lock at ``BEGIN IMMEDIATE``, so no other process reads
        stale books in between."""
        con = self._conn()
        with con:
            con.execute("BEGIN IMMEDIATE")
            query = lambda sql, params=(): con.execute(sql, params).fetchall()  # noqa: E731
            yield Tx(query, "?", "", "(julianday('now') - 2440587.5) * 86400.0")

    def admit(
        self, hold: Hold, tokens: int, cost: float, max_tokens: int | None, max_cost: float | None
    ) -> Admission:
        """Whether a request of up to ``tokens`` / ``cost`` fits the run's budget beside what the run
        has spent and every live gateway of it holds; if so, ``hold`` (this gateway's hold before the
        request) grows by it. One write transaction: two workers cannot both take the last room."""
        with self.transaction() as tx:
            return ledger.admit(tx, hold, tokens, cost, max_tokens, max_cost)

    def calls_frame(self) -> pl.DataFrame:
        """The whole call journal as a frame in the lake's ``llm_calls`` schema."""
        rows = self._conn().execute(f"SELECT {CALL_COLUMNS} FROM llm_calls ORDER BY rowid").fetchall()
        return calls_frame(rows)  # typed: old rows have no run_id

    def run_spend(self, run_id: str) -> tuple[int, float]:
        """Tokens and dollars the journal records for one run, over every stage and process of it
        (summed from the journal itself: the books :meth:`admit` keeps must agree with it)."""
        tokens, cost = (
            self._conn()
            .execute(
                "SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0), "
                "coalesce(sum(cost_usd), 0.0) FROM llm_calls WHERE run_id = ?",
                (run_id,),
            )
            .fetchone()
        )
        return int(tokens), float(cost)

    def journal_size(self) -> int:
        """Rows in the call journal (it is append-only, so an unchanged size means unchanged rows)."""
        return self._conn().execute("SELECT count(*) FROM llm_calls").fetchone()[0]

    def journal_last_seq(self) -> int:
        """The journal's last sequence number (0 when empty): rows are numbered from 1 in the order
        they were committed, so the rows after a number are exactly the calls journaled since."""
        return int(self._conn().execute("SELECT coalesce(max(rowid), 0) FROM llm_calls").fetchone()[0])

    def calls_between(self, first: int, last: int) -> pl.DataFrame:
        """Journal rows ``first`` … ``last`` (sequence numbers, inclusive), with their ``seq``."""
        rows = (
            self._conn()
            .execute(
                f"SELECT {CALL_COLUMNS}, rowid FROM llm_calls WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (first, last),
            )
            .fetchall()
        )
        return calls_frame(rows, with_seq=True)

    def exists(self) -> bool:
        return self.path.exists()

    def close(self) -> None:
        """Close this thread's connection (another call opens a new one)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
        self._local.con = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
