"""The seam every LLM stage goes through: requests that carry their context, one call to the gateway,
a parse per answer that returns a row or the reason there is none.

A stage is two functions — build the requests, parse an answer — and :func:`run_stage` does the rest:
it hands the requests to the gateway as they are built (the first calls start before the last request
exists), pairs every result with the request it answers, and sorts the outcome into rows and
``rejects`` (a failed call, a skipped call, an answer that does not parse: each with its reason and
raw text). So adding a stage is one file of render + parse (the README's development section)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import polars as pl

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult

Progress = Callable[[int, int], None]
Parsed = tuple[dict | None, str | None]  # the row (or None), and why it was rejected (or None)
Parse = Callable[[LLMRequest, LLMResult], Parsed]


@dataclass
class StageOutput:
    rows: pl.DataFrame
    rejects: pl.DataFrame
    stats: GatewayStats


@dataclass
class Answers:
    """What :func:`run_stage` sorted: rows, ``rejects`` entries, and the gateway's statistics."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: GatewayStats = field(default_factory=GatewayStats)

    def merge(self, other: Answers) -> None:
        self.rows.extend(other.rows)
        self.rejects.extend(other.rejects)
        self.stats.merge(other.stats)

    def output(self, table: str, stage: str, partition: str) -> StageOutput:
        return StageOutput(
            rows_frame(table, self.rows), reject_rows(self.rejects, stage, partition), self.stats
        )


def run_stage(
    gateway: LLMGateway,
    requests: Iterable[LLMRequest],
    parse: Parse,
    *,
    stage: str,
    progress: Progress | None = None,
    parse_failures: bool = False,
) -> Answers:
    """Ask ``requests`` (each carrying its ``context``) and ``parse`` every answer in request order.

    ``parse(request, result)`` returns ``(row, reason)``: a row is kept, a reason is a ``rejects``
    entry (both at once: kept, with a note — a solver's answer that has no final answer). A failed or
    skipped call is always a ``rejects`` entry; it reaches ``parse`` only with ``parse_failures`` (a
    stage that records failures as rows too, like the math check's solver table)."""
    asked: list[LLMRequest] = []

    def tap() -> Iterator[LLMRequest]:
        for request in requests:
            # what parse needs (key, params, context), without the prompt: the prompts of a stage
            # stream through the gateway's bounded queue instead of piling up here
            asked.append(replace(request, messages=[]))
            yield request

    results, stats = gateway.generate(tap(), stage, progress)
    out = Answers(stats=stats)
    for request, res in zip(asked, results, strict=True):
        row, reason = parse(request, res) if res.ok or parse_failures else (None, None)
        if row is not None:
            out.rows.append(row)
        if row is None or reason is not None or not res.ok:
            out.rejects.append(reject(res, reason))
    return out


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
