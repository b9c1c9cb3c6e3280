"""What every LLM stage hands back: accepted rows, rejected answers with reasons, gateway statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.llm import GatewayStats, LLMResult
from personahub_dagster.core.schemas import now_utc, rows_frame

Progress = Callable[[int, int], None]


@dataclass
class StageOutput:
    rows: pl.DataFrame
    rejects: pl.DataFrame
    stats: GatewayStats


def reject(res: LLMResult, reason: str | None) -> dict:
    """A rejects entry for one LLM result: a request the run's budget did not allow, a transport
    failure, or an answer that failed to parse."""
    if not res.ok:
        return {
            "input_id": res.key,
            "request_hash": res.request_hash,
            "raw_output": None,
            "reason": res.error if res.skipped else f"llm_error: {res.error}",
        }
    return {
        "input_id": res.key,
        "request_hash": res.request_hash,
        "raw_output": res.content,
        "reason": reason,
    }


def reject_rows(items: list[dict], stage: str, partition: str) -> pl.DataFrame:
    """Rows for the ``rejects`` table; ``items`` hold input_id, request_hash, raw_output, reason."""
    ts = now_utc()
    return rows_frame(
        "rejects", [{**i, "stage": stage, "partition": partition, "created_at": ts} for i in items]
    )
