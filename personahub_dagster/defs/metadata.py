"""Materialization metadata and progress logging shared by the assets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import dagster as dg
import polars as pl

from personahub_dagster.core.evaluation.plots import png_base64
from personahub_dagster.core.lake.lineage import LineageStep
from personahub_dagster.core.lake.schemas import SCHEMAS, sql_type
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.results import GatewayStats
from personahub_dagster.core.stages.mix import Raking


def md_table(df: pl.DataFrame, columns: list[str], n: int = 5, width: int = 160) -> dg.MetadataValue:
    """A markdown preview of the first ``n`` rows (cells cut to ``width`` characters)."""
    if df.is_empty():
        return dg.MetadataValue.md("_no rows_")

    def cell(v: object) -> str:
        s = "" if v is None else str(v).replace("\n", " ").replace("|", "\\|")
        return s if len(s) <= width else s[: width - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in df.head(n).iter_rows(named=True)]
    return dg.MetadataValue.md("\n".join(lines))


def column_schema(table: str) -> dg.TableSchemaMetadataValue:
    """A lake table's columns, as Dagster's catalog shows them (from :data:`~.schemas.SCHEMAS`)."""
    columns = [dg.TableColumn(name, sql_type(dtype)) for name, dtype in SCHEMAS[table].items()]
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))


def table_definition(table: str) -> dict[str, object]:
    """Definition metadata of an asset that writes ``table``: the catalog shows its columns before
    any run."""
    return {"dagster/column_schema": column_schema(table), "table": table}


def lake_metadata(lake: Lake, table: str | None = None, rows: int | None = None) -> dict[str, object]:
    """Where the asset's tables are and the Delta version it committed to each: ``as_of`` pastes into
    ``personahub sql --as-of`` to query the lake exactly as this materialization left it. With the
    asset's ``table``, Dagster's standard keys too: the rows this materialization wrote
    (``dagster/row_count``), the columns (``dagster/column_schema``) and the table's ``dagster/uri``."""
    versions = dict(sorted(lake.committed.items()))
    out: dict[str, object] = {
        "lake": dg.MetadataValue.text(lake.uri),
        "delta_versions": dg.MetadataValue.json(versions),
        "as_of": dg.MetadataValue.text(",".join(f"{t}={v}" for t, v in versions.items())),
    }
    if table is not None:
        out["dagster/uri"] = dg.MetadataValue.text(lake.table_uri(table))
        out["dagster/column_schema"] = column_schema(table)
        if rows is not None:
            out["dagster/row_count"] = dg.MetadataValue.int(rows)
    return out


def lineage_markdown(
    lake: Lake, row_ids: list[str], partitions: list[str] | None = None, width: int = 140
) -> dg.MetadataValue:
    """The lineage of a few generated rows as markdown: row → persona → parent personas → source text,
    so the chain is one click away in the UI (``personahub lineage ROW_ID`` prints the same);
    ``partitions``: where to look first (the step's day)."""
    if not row_ids:
        return dg.MetadataValue.md("_no rows_")
    chains = (steps_markdown(lake.lineage(r, partitions=partitions), width) for r in row_ids)
    return dg.MetadataValue.md("\n\n".join(chains))


def steps_markdown(steps: list[LineageStep], width: int = 140) -> str:
    """One lineage chain as a nested markdown list, each step with its kind, id and (cut) text."""
    lines = []
    for depth, step in enumerate(steps):
        text = step.text.replace("\n", " ")
        text = text if len(text) <= width else text[: width - 1] + "…"
        label = {
            "persona": f"persona (hop {step.detail.get('hop')})",
            "text": f"text ({step.detail.get('license', 'unknown')})",
        }.get(step.kind, step.kind)
        lines.append(f"{'  ' * depth}- **{label}** `{step.id}`: {text}")
    return "\n".join(lines)


def llm_metadata(stats: GatewayStats) -> dict[str, object]:
    p50, p95 = stats.latency_percentile(0.5), stats.latency_percentile(0.95)
    return {
        "llm_requests": stats.requests,
        "llm_cache_hits": stats.cache_hits,
        "llm_cache_hit_rate": round(stats.cache_hit_rate, 4),
        "llm_calls": stats.calls,
        "llm_retries": stats.retries,
        "llm_failures": stats.failures,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "cost_usd": round(stats.cost_usd, 6),
        "latency_p50_s": round(p50, 3) if p50 is not None else None,
        "latency_p95_s": round(p95, 3) if p95 is not None else None,
        "llm_skipped_over_budget": stats.skipped,
        "budget_exhausted": stats.budget_exhausted or "",
        "pii_scrubbed_requests": stats.scrubbed,
        "rate_limited_429s": stats.rate_limited,
        "rpm_allowed_at_end": round(stats.allowed_rpm, 1) if stats.allowed_rpm is not None else None,
        "rpm_sent": round(stats.sent_per_minute, 1) if stats.sent_per_minute is not None else None,
        **(
            {
                "llm_batch_ids": dg.MetadataValue.json(stats.batch_ids),
                "llm_batch_submitted": stats.batch_submitted,
            }
            if stats.batch_ids
            else {}
        ),
    }


def warn_if_over_budget(context: dg.AssetExecutionContext, stats: GatewayStats) -> None:
    """Say loudly that the run's LLM budget stopped this stage early (what was done is kept)."""
    if stats.budget_exhausted:
        context.log.warning(
            f"LLM budget reached: {stats.skipped} requests not sent ({stats.budget_exhausted}); "
            "the rows made so far are kept, the rest are in rejects as budget_exhausted. "
            "Raise max_run_tokens / max_run_cost_usd and re-run: paid answers come from the cache."
        )


def reject_metadata(rejects: pl.DataFrame) -> dict[str, object]:
    counts = rejects.group_by("reason").len().sort("len", descending=True) if not rejects.is_empty() else None
    by_reason = {r: n for r, n in counts.iter_rows()} if counts is not None else {}
    return {"rejects": rejects.height, "rejects_by_reason": dg.MetadataValue.json(by_reason)}


def progress_logger(
    context: dg.AssetExecutionContext, stage: str, every_s: float = 10.0
) -> Callable[[int, int], None]:
    """A progress callback that logs count and rate at most every ``every_s`` seconds (and at the end),
    so a user watching the run in the UI sees a long LLM stage move."""
    state = {"started": time.monotonic(), "logged": 0.0, "done": 0}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done <= state["done"]:  # a new batch (the next hop) began
            state["started"] = now
        state["done"] = done
        if done == total or now - state["logged"] >= every_s:
            state["logged"] = now
            rate = done / max(now - state["started"], 1e-9)
            context.log.info(f"{stage}: {done}/{total} LLM calls done ({rate:.2f}/s)")

    return report


def _figure(title: str, xlabel: str, draw: Callable[[object], None]) -> dg.MetadataValue:
    """A small PNG chart embedded in markdown metadata: the UI shows it with the materialization, for
    what a person would rather look at than read (hub similarity, personas per hop)."""
    png = png_base64(draw, title, xlabel, "personas")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{png})")


def histogram(values: list[float | None], title: str, xlabel: str, bins: int = 20) -> dg.MetadataValue:
    values = [v for v in values if v is not None]
    if not values:
        return dg.MetadataValue.md("_no values_")
    return _figure(title, xlabel, lambda ax: ax.hist(values, bins=bins, color="#4f6d8f"))


def counts_of(frame: pl.DataFrame, column: str) -> dict[str, int]:
    """Rows per value of ``column``, commonest first (empty where the frame has no such column)."""
    if column not in frame.columns or frame.is_empty():
        return {}
    counts = frame.group_by(column).len().sort(["len", column], descending=[True, False])
    return {str(k): int(n) for k, n in counts.iter_rows()}


def bar_chart(counts: dict[str, int], title: str, xlabel: str) -> dg.MetadataValue:
    if not counts:
        return dg.MetadataValue.md("_no values_")
    return _figure(title, xlabel, lambda ax: ax.bar(list(counts), list(counts.values()), color="#4f6d8f"))


def mix_metadata(raking: Raking) -> dict[str, object]:
    """What a target mix reached: the weighted shares per targeted value, the largest miss, and the
    targets the hub could not meet (with why), so a skewed hub shows in the run, not in the dataset."""
    return {
        "target_mix_reached": dg.MetadataValue.json(
            {a: {v: round(s, 4) for v, s in shares.items()} for a, shares in raking.reached.items()}
        ),
        "target_mix_max_error": round(raking.max_error, 4),
        "target_mix_shortfalls": dg.MetadataValue.json([asdict(s) for s in raking.infeasible]),
    }
