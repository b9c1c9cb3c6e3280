"""The response cache and call journal on Postgres, for many workers on many machines.

Same interface and semantics as the SQLite cache (:class:`~.sqlite.ResponseCache`), chosen with
``PERSONAHUB_CACHE=postgresql://user@host:5432/db`` (the password from ``PGPASSWORD`` or
``~/.pgpass``, the libpq way, so it appears in no setting the UI shows). Why it is shaped this way:

* The gateway commits everything that arrived during one turn of its event loop together; here that
  is one transaction of two statements — ``INSERT … ON CONFLICT DO NOTHING`` of the answers, one
  multi-row ``INSERT`` of the journal rows — so a worker makes one round trip per turn, not per answer.
* ``ON CONFLICT DO NOTHING``: two workers that asked the same request at the same moment both paid,
  and the first answer committed stays; the second never overwrites it. Answers are inserted in hash
  order, so two such transactions never wait on each other in a cycle.
* Look-ups are ``request_hash = ANY(%s)`` with an array parameter: one statement for any number of
  keys, and one plan.
* Run budgets sum the journal by ``run_id`` across every worker of a run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from personahub_dagster.core.config.secrets import redact, register
from personahub_dagster.core.llm.cache import ledger
from personahub_dagster.core.llm.cache.ledger import Admission, Hold, Tx
from personahub_dagster.core.llm.cache.records import (
    CALL_SCHEMA,
    CachedResponse,
    CacheError,
    CallRecord,
    calls_frame,
    responses_ddl,
)
from personahub_dagster.core.llm.cache.sqlite import ResponseCache

_DDL = (
    responses_ddl("DOUBLE PRECISION")
    + """
CREATE TABLE IF NOT EXISTS llm_calls (
    id BIGSERIAL PRIMARY KEY,
    request_hash TEXT NOT NULL,
    stage TEXT,
    model TEXT,
    attempt INTEGER,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cost_usd DOUBLE PRECISION,
    latency_s DOUBLE PRECISION,
    status TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    run_id TEXT,
    mode TEXT
);
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS mode TEXT;
CREATE INDEX IF NOT EXISTS llm_calls_run ON llm_calls (run_id);
"""
    + ledger.ledger_ddl("DOUBLE PRECISION")
    + ledger.rate_ddl("DOUBLE PRECISION")
)
T = TypeVar("T")
_COLUMNS = list(CALL_SCHEMA)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresResponseCache(ResponseCache):
    """A :class:`ResponseCache` in two Postgres tables; one connection per thread."""

    def __init__(self, url: str):
        self.url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        register(urlsplit(self.url).password)  # redacted from every error and log line from here on
        self.path = None  # not the parent's __init__: that one opens a SQLite file
        self._local = threading.local()
        con = self._conn()
        with con, con.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('personahub.llm_cache.ddl'))")
            cur.execute(_DDL)  # the lock: two workers creating the tables at once would collide

    def __repr__(self) -> str:
        return f"PostgresResponseCache({redact_url(self.url)!r})"

    def _conn(self):
        con = getattr(self._local, "con", None)
        if con is None or con.closed:
            import psycopg2

            try:
                con = psycopg2.connect(self.url, connect_timeout=10, application_name="personahub")
            except psycopg2.OperationalError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                reason = redact(reason, (urlsplit(self.url).password,))
                raise CacheError(
                    f"PERSONAHUB_CACHE: cannot use the Postgres cache {redact_url(self.url)}: {reason}"
                ) from None
            self._local.con = con
        return con

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        con = self._conn()
        with con, con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def get(self, request_hash: str) -> CachedResponse | None:
        found = self.get_many([request_hash])
        return found.get(request_hash)

    def get_many(self, hashes: list[str]) -> dict[str, CachedResponse]:
        if not hashes:
            return {}
        rows = self._query(
            "SELECT request_hash, content, finish_reason, prompt_tokens, completion_tokens "
            "FROM responses WHERE request_hash = ANY(%s)",
            (list(hashes),),
        )
        return {h: CachedResponse(*rest) for h, *rest in rows}

    def put_many(
        self,
        responses: list[tuple[str, str, CachedResponse]],
        calls: list[CallRecord],
        hold: Hold | None = None,
    ) -> None:
        """One transaction (the run's spend and the gateway's hold in it, as in SQLite).
        Answers go in hash order: two workers inserting overlapping keys in
        different orders would each wait on a row the other holds, and Postgres would abort one of them
        as a deadlock (its answers and journal rows with it). A deadlock or serialization failure that
        still happens is retried, so a paid call is never left out of the journal."""
        responses = sorted(responses, key=lambda item: item[0])
        retry_deadlocks(lambda: self._put_many(responses, calls, hold))

    def _put_many(
        self, responses: list[tuple[str, str, CachedResponse]], calls: list[CallRecord], hold: Hold | None
    ) -> None:
        from psycopg2.extras import execute_values

        now = time.time()
        con = self._conn()
        with con, con.cursor() as cur:
            tx = _pg_tx(cur)
            if calls:
                # journal rows are numbered in commit order (the lake's mirror appends past the last
                # number it copied, so a lower number must never commit after a higher one); the lock
                # is held for one short transaction and lets readers through
                cur.execute("LOCK TABLE llm_calls IN SHARE ROW EXCLUSIVE MODE")
                ledger.ensure_spend(tx, ledger.spend_keys(calls, hold))
            if responses:
                execute_values(
                    cur,
                    "INSERT INTO responses VALUES %s ON CONFLICT (request_hash) DO NOTHING",
                    [
                        (h, m, r.content, r.finish_reason, r.prompt_tokens, r.completion_tokens, now)
                        for h, m, r in responses
                    ],
                    page_size=max(len(responses), 1),
                )
            if calls:
                execute_values(
                    cur,
                    f"INSERT INTO llm_calls ({', '.join(_COLUMNS)}) VALUES %s",
                    [c.row(now) for c in calls],
                    page_size=max(len(calls), 1),
                )
            ledger.book(tx, calls, hold)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction; a row read with ``tx.for_update`` stays locked until it ends."""
        con = self._conn()
        with con, con.cursor() as cur:
            yield _pg_tx(cur)

    def admit(
        self, hold: Hold, tokens: int, cost: float, max_tokens: int | None, max_cost: float | None
    ) -> Admission:
        """As in SQLite; the run's spend row is locked (``FOR UPDATE``) for the decision, so the
        admissions of every worker of a run are serialized and none can take room another took."""
        return retry_deadlocks(lambda: self._admit(hold, tokens, cost, max_tokens, max_cost))

    def _admit(self, *args) -> Admission:
        with self.transaction() as tx:
            return ledger.admit(tx, *args)

    def calls_frame(self) -> pl.DataFrame:
        return calls_frame(self._query(f"SELECT {', '.join(_COLUMNS)} FROM llm_calls ORDER BY id"))

    def run_spend(self, run_id: str) -> tuple[int, float]:
        (tokens, cost), *_ = self._query(
            "SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0), "
            "coalesce(sum(cost_usd), 0.0) FROM llm_calls WHERE run_id = %s",
            (run_id,),
        )
        return int(tokens), float(cost)

    def journal_size(self) -> int:
        return int(self._query("SELECT count(*) FROM llm_calls")[0][0])

    def journal_last_seq(self) -> int:
        return int(self._query("SELECT coalesce(max(id), 0) FROM llm_calls")[0][0])

    def calls_between(self, first: int, last: int) -> pl.DataFrame:
        rows = self._query(
            f"SELECT {', '.join(_COLUMNS)}, id FROM llm_calls WHERE id BETWEEN %s AND %s ORDER BY id",
            (first, last),
        )
        return calls_frame(rows, with_seq=True)

    def exists(self) -> bool:
        return True

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None and not con.closed:
            con.close()
        self._local.con = None


def retry_deadlocks(work: Callable[[], T]) -> T:
    """``work`` again after a deadlock or a serialization failure (Postgres aborted it so that another
    transaction could go on: nothing of it was committed), up to five times."""
    import psycopg2.errors

    for attempt in range(5):
        try:
            return work()
        except (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure):
            if attempt == 4:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _pg_tx(cur) -> Tx:
    """The ledger's view of a transaction on this cursor: a row read ``FOR UPDATE`` stays locked until
    it ends, and the clock is the server's."""

    def query(sql: str, params: tuple = ()) -> list[tuple]:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []

    return Tx(query, "%s", " FOR UPDATE", "extract(epoch from clock_timestamp())")
