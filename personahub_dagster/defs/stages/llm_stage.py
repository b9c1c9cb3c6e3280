"""What every LLM-stage asset shares: how it is declared and how it ends.

An LLM stage asset (Text-to-Persona, Persona-to-Persona, each synthesis type, the math agreement
filter, the diversity bands) is partitioned like the pipeline, runs in the ``llm`` pool with the LLM
retry policy, and shows its table's columns in the catalog (:func:`llm_asset`). It ends the same way
too: its rows and its rejects in one lake commit with a warning when the run's budget stopped it
(:func:`commit_stage`), and the metadata every stage reports — Dagster's standard table keys, reject
reasons, tokens, latency and cost, a preview (:func:`stage_metadata`).
"""

from collections.abc import Callable, Sequence

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.stage import StageOutput
from personahub_dagster.defs.evaluation import checks as asset_checks
from personahub_dagster.defs.llm.pools import LLM_POOL, LLM_RETRY
from personahub_dagster.defs.metadata import (
    lake_metadata,
    llm_metadata,
    md_table,
    reject_metadata,
    table_definition,
    warn_if_over_budget,
)
from personahub_dagster.defs.partitions import partition_of, pipeline_partitions


class LLMStageConfig(dg.Config):
    """What every LLM asset's config has: the mode, overriding the ``llm`` resource's for this asset."""

    llm_mode: str | None = Field(
        default=None, description="online | batch for this asset; null: the llm resource's mode"
    )


def llm_asset(table: str, checks: Sequence[str] = (), **asset_args) -> Callable:
    """``@dg.asset`` for an LLM stage that writes ``table``, with the asset checks named in ``checks``
    (:mod:`~personahub_dagster.defs.evaluation.checks`); other ``@dg.asset`` arguments pass through,
    ``metadata`` joins the table's."""
    metadata = {**table_definition(table), **asset_args.pop("metadata", {})}

    def decorate(fn: Callable) -> dg.AssetsDefinition:
        name = asset_args.get("name", fn.__name__)
        return dg.asset(
            metadata=metadata,
            kinds={"deltalake"},
            partitions_def=pipeline_partitions,
            pool=LLM_POOL,
            retry_policy=LLM_RETRY,
            check_specs=asset_checks.specs(name, *checks) if checks else None,
            **asset_args,
        )(fn)

    return decorate


def commit_stage(
    context: dg.AssetExecutionContext,
    lake: Lake,
    table: str,
    out: StageOutput,
    rejects: pl.DataFrame | None = None,
) -> None:
    """The stage's rows to ``table`` and its ``rejects`` (default: the stage's) in one commit, as the
    asset's slice of its partition; a warning when the run's budget stopped the stage early."""
    rejects = out.rejects if rejects is None else rejects
    producer, day = context.asset_key.path[-1], partition_of(context)
    lake.write_many({table: out.rows, "rejects": rejects}, producer=producer, partition=day)
    warn_if_over_budget(context, out.stats)


def stage_metadata(
    lake: Lake,
    table: str,
    out: StageOutput,
    preview: Sequence[str] = (),
    rejects: pl.DataFrame | None = None,
) -> dict[str, object]:
    """What every LLM stage reports: where its table is and what it committed (Dagster's standard
    keys among them), its reject reasons, tokens, latency and cost, and a preview of ``preview``'s
    columns."""
    rejects = out.rejects if rejects is None else rejects
    shown = {"preview": md_table(out.rows, list(preview))} if preview else {}
    return {
        **lake_metadata(lake, table, out.rows.height),
        **reject_metadata(rejects),
        **llm_metadata(out.stats),
        **shown,
    }


def generation_checks(
    lake: Lake, day: str, out: StageOutput, thresholds: asset_checks.CheckThresholds
) -> list[dg.AssetCheckResult]:
    """The checks of a stage that writes ``generations``: its reject rate, that it made rows (a
    warning: a small hub can leave a day without), and that each of its rows walks back to a text."""
    mine = set(out.rows["row_id"])
    broken = [b for b in lake.broken_lineage(day) if b in mine]
    return [
        asset_checks.reject_rate(out.rows.height, out.rejects.height, thresholds),
        asset_checks.not_empty(out.rows.height, thresholds, dg.AssetCheckSeverity.WARN),
        asset_checks.lineage(broken, out.rows.height),
    ]
