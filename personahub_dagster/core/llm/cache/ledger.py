"""The books a team shares through the response cache's database: a run's spend and the holds of its
requests in flight (:mod:`~personahub_dagster.core.llm.budget`), and the tables of a key's shared
rate limit (:mod:`~personahub_dagster.core.llm.rate.shared`). Plain SQL over a :class:`Tx`, so that
SQLite and Postgres run the same statements (their placeholders, row locks and clocks come with the
transaction)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Spend(Protocol):
    """What the books read of a journaled call (:class:`~.records.CallRecord` is one)."""

    run_id: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None


def ledger_ddl(float_type: str) -> str:
    """The run budget's two tables (:mod:`~personahub_dagster.core.llm.budget`): what each run has
    spent, kept in step with the journal by the transaction that journals the calls, and what each live
    gateway of a run holds for its requests in flight (until ``expires_at``: a killed worker's hold lapses on
    its own)."""
    return f"""
CREATE TABLE IF NOT EXISTS run_spend (
    run_id TEXT PRIMARY KEY,
    tokens BIGINT NOT NULL,
    cost_usd {float_type} NOT NULL
);
CREATE TABLE IF NOT EXISTS run_holds (
    run_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    cost_usd {float_type} NOT NULL,
    expires_at {float_type} NOT NULL,
    PRIMARY KEY (run_id, holder)
);
"""


def rate_ddl(float_type: str) -> str:
    """The shared rate limit's buckets, one row per key
    (:class:`~personahub_dagster.core.llm.rate.shared.SharedRate`)."""
    return f"""
CREATE TABLE IF NOT EXISTS rate_limits (
    name TEXT PRIMARY KEY,
    rpm {float_type},
    tpm {float_type},
    requests {float_type} NOT NULL,
    tokens {float_type} NOT NULL,
    stamp {float_type} NOT NULL,
    factor {float_type} NOT NULL,
    last_cut {float_type} NOT NULL
);
"""


@dataclass(frozen=True)
class Hold:
    """What one gateway of a run holds back for its requests in flight, until ``expires_at``."""

    run_id: str
    holder: str
    tokens: int
    cost_usd: float
    expires_at: float


@dataclass(frozen=True)
class Tx:
    """A transaction on either backend: run a statement, its placeholder, how it locks a row it
    reads, and the database's clock in seconds (one clock for workers on several machines)."""

    query: Callable[..., list[tuple]]
    q: str
    for_update: str
    clock: str


@dataclass(frozen=True)
class Admission:
    """The answer to a budget request: whether it fits, and the run's books as they stood."""

    admitted: bool
    final: bool  # not admitted and never will be: the run's spend alone leaves no room for it
    spent_tokens: int
    spent_cost: float
    held_tokens: int  # by every live gateway of the run, this one included, before this request
    held_cost: float


def ensure_spend(tx: Tx, run_ids: set[str]) -> None:
    """A run's spend row, started from the journal when missing (a run journaled before the books
    were kept, or a run's first call). Called before the transaction journals anything."""
    query, q = tx.query, tx.q
    for run_id in sorted(run_ids):
        if not query(f"SELECT 1 FROM run_spend WHERE run_id = {q}", (run_id,)):
            query(
                "INSERT INTO run_spend SELECT run_id, "
                "coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0), "
                f"coalesce(sum(cost_usd), 0.0) FROM (SELECT CAST({q} AS TEXT) AS run_id) AS r "
                f"LEFT JOIN llm_calls USING (run_id) WHERE true GROUP BY run_id "
                "ON CONFLICT (run_id) DO NOTHING",
                (run_id,),
            )


def spend_keys(calls: Sequence[Spend], hold: Hold | None) -> set[str]:
    """Whose spend the calls are: the budget the gateway holds from, else each call's run."""
    if hold is not None:
        return {hold.run_id} if calls else set()
    return {c.run_id for c in calls if c.run_id}


def book(tx: Tx, calls: Sequence[Spend], hold: Hold | None) -> None:
    """Add the calls to their budget's spend (see :func:`spend_keys`); set the gateway's hold
    (deleted when nothing is held)."""
    query, q = tx.query, tx.q
    spend: dict[str, list[float]] = {}
    for c in calls:
        key = hold.run_id if hold is not None else c.run_id
        if key is not None:
            books = spend.setdefault(key, [0, 0.0])
            books[0] += (c.prompt_tokens or 0) + (c.completion_tokens or 0)
            books[1] += c.cost_usd or 0.0
    for run_id, (tokens, cost) in sorted(spend.items()):
        query(
            f"UPDATE run_spend SET tokens = tokens + {q}, cost_usd = cost_usd + {q} WHERE run_id = {q}",
            (int(tokens), float(cost), run_id),
        )
    if hold is not None:
        set_hold(tx, hold)


def set_hold(tx: Tx, hold: Hold) -> None:
    query, q = tx.query, tx.q
    if hold.tokens <= 0 and hold.cost_usd <= 0:
        query(f"DELETE FROM run_holds WHERE run_id = {q} AND holder = {q}", (hold.run_id, hold.holder))
        return
    query(
        f"INSERT INTO run_holds VALUES ({q}, {q}, {q}, {q}, {q}) ON CONFLICT (run_id, holder) DO UPDATE "
        "SET tokens = excluded.tokens, cost_usd = excluded.cost_usd, expires_at = excluded.expires_at",
        (hold.run_id, hold.holder, int(hold.tokens), float(hold.cost_usd), hold.expires_at),
    )


def admit(
    tx: Tx, hold: Hold, tokens: int, cost: float, max_tokens: int | None, max_cost: float | None
) -> Admission:
    query, q = tx.query, tx.q
    ensure_spend(tx, {hold.run_id})
    (spent_tokens, spent_cost), *_ = query(
        f"SELECT tokens, cost_usd FROM run_spend WHERE run_id = {q}{tx.for_update}", (hold.run_id,)
    )
    (held_tokens, held_cost), *_ = query(
        "SELECT coalesce(sum(tokens), 0), coalesce(sum(cost_usd), 0.0) FROM run_holds "
        f"WHERE run_id = {q} AND holder <> {q} AND expires_at > {q}",
        (hold.run_id, hold.holder, time.time()),
    )
    held_tokens, held_cost = int(held_tokens) + hold.tokens, float(held_cost) + hold.cost_usd
    fits = (max_tokens is None or spent_tokens + held_tokens + tokens <= max_tokens) and (
        max_cost is None or spent_cost + held_cost + cost <= max_cost
    )
    if fits:
        grown = Hold(hold.run_id, hold.holder, hold.tokens + tokens, hold.cost_usd + cost, hold.expires_at)
        set_hold(tx, grown)
    final = (max_tokens is not None and spent_tokens + tokens > max_tokens) or (
        max_cost is not None and spent_cost + cost > max_cost
    )
    return Admission(fits, not fits and final, int(spent_tokens), float(spent_cost), held_tokens, held_cost)
