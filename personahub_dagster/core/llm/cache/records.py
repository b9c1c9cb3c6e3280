"""What the response cache holds, whichever database holds it: an answer (:class:`CachedResponse`),
one attempt at the provider (:class:`CallRecord`, a row of the call journal), the journal's columns
and the request fingerprint that keys both."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.config.ids import digest

CALL_SCHEMA: dict[str, pl.DataType] = {  # the journal's columns; the lake's llm_calls table has them too
    "request_hash": pl.Utf8,
    "stage": pl.Utf8,
    "model": pl.Utf8,
    "attempt": pl.Int32,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,
    "latency_s": pl.Float64,
    "status": pl.Utf8,
    "error": pl.Utf8,
    "created_at": pl.Datetime("us", "UTC"),
    "run_id": pl.Utf8,
    "mode": pl.Utf8,
}
CALL_COLUMNS = ", ".join(CALL_SCHEMA)


def responses_ddl(float_type: str) -> str:
    """The answers table, in SQLite's (``REAL``) or Postgres's (``DOUBLE PRECISION``) words."""
    return f"""
CREATE TABLE IF NOT EXISTS responses (
    request_hash TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at {float_type} NOT NULL
);
"""


@dataclass(frozen=True)
class CachedResponse:
    content: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True)
class CallRecord:
    """One attempt at the provider: what it cost and how it ended (ok, error, timeout)."""

    request_hash: str
    stage: str
    model: str
    attempt: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float | None  # None: a batch call (no per-request latency)
    status: str
    error: str | None
    run_id: str | None = None
    mode: str = "online"  # online (one request, one answer) or batch (the provider's batch API)

    def row(self, created_at: float) -> tuple:
        """The journal row, in ``CALL_SCHEMA`` order."""
        return (
            self.request_hash, self.stage, self.model, self.attempt, self.prompt_tokens,
            self.completion_tokens, self.cost_usd, self.latency_s, self.status, self.error, created_at,
            self.run_id, self.mode,
        )  # fmt: skip


class CacheError(RuntimeError):
    """The cache cannot be reached or used; the message names the setting and hides any password."""


def calls_frame(rows: list[tuple], with_seq: bool = False) -> pl.DataFrame:
    """Journal rows (``created_at`` as epoch seconds, as both backends store it) as a typed frame;
    ``with_seq``: each row ends with its sequence number (column ``seq``)."""
    seq = {"seq": pl.Int64} if with_seq else {}
    schema = {**CALL_SCHEMA, "created_at": pl.Float64, **seq}
    df = pl.DataFrame(rows, schema=schema, orient="row")
    return df.with_columns(
        (pl.col("created_at").cast(pl.Float64) * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
    ).cast({**CALL_SCHEMA, **seq})


def request_fingerprint(model: str, messages: list[dict[str, str]], params: dict[str, object]) -> str:
    """The cache key: model + messages + sampling params, canonical JSON, SHA-256."""
    return digest("llm", model, messages, params)
