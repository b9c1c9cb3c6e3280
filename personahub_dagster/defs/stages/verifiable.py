"""``verifiable_instructions``: persona requests with checkable constraints, answered twice, checked by
code; the answers that meet them, every verdict, and the checker's preference pairs."""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.stages.synthesis import select_personas
from personahub_dagster.core.stages.verifiable import verifiable_instructions
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.metadata import lineage_markdown, md_table, progress_logger, warn_if_over_budget
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.llm_stage import (
    LLMStageConfig,
    generation_checks,
    llm_asset,
    stage_metadata,
)


class VerifiableConfig(LLMStageConfig):
    n_personas: int = Field(default=8, ge=1, description="Personas (one request each).")
    partitions: list[str] | None = Field(
        default=None, description="Hub days to draw from (default: the run's)."
    )
    seed: int = 0
    min_constraints: int = Field(default=1, ge=1)
    max_constraints: int = Field(default=3, ge=1)
    kinds: list[str] | None = Field(
        default=None, description="Instruction ids to draw from, e.g. detectable_format:title (default: all)."
    )
    families: list[str] = Field(
        default=["ifeval", "ifbench"],
        description="Constraint families: ifeval (IFEval's 25 ids) and/or ifbench (IFBench's out-of-domain "
        "kinds) — train on one, evaluate on the other. Each request draws from one family.",
    )
    temperatures: list[float] = Field(
        default=[0.3, 1.0], min_length=2, max_length=2, description="The two answers' temperatures."
    )
    task_template: str = "instruction"
    answer_template: str = "assistant_response"
    checks: CheckThresholds = CheckThresholds()


@llm_asset(
    "generations",
    ["reject_rate", "not_empty", "lineage"],
    name="verifiable_instructions",
    deps=[persona_hub],
    group_name="post_training",
)
def verifiable_instructions_asset(
    context, config: VerifiableConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Instruction following that code can check (IFEval-style constraints on a persona's request):
    answers that meet every constraint, each answer's verdicts (``constraint_checks``) and, where the
    two answers differ, a preference pair judged by the checker (``preference_pairs``)."""
    lk, day = lake.lake(context), partition_of(context)
    days = config.partitions or [day]
    chosen = select_personas(lk.read("hub", partitions=days), config.n_personas, f"{config.seed}:verifiable")
    try:
        out = verifiable_instructions(
            chosen,
            llm.gateway(lk, context, config),
            prompts.template(config.task_template),
            prompts.template(config.answer_template),
            partition=day,
            constraints=(config.min_constraints, config.max_constraints),
            kinds=config.kinds,
            families=config.families,
            temperatures=(config.temperatures[0], config.temperatures[1]),
            seed=config.seed,
            progress=progress_logger(context, "verifiable_instructions"),
        )
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    lk.write_many(
        {
            "generations": out.rows,
            "constraint_checks": out.checks,
            "preference_pairs": out.pairs,
            "rejects": out.rejects,
        },
        producer="verifiable_instructions",
        partition=day,
    )
    warn_if_over_budget(context, out.stats)
    by_kind = (
        out.checks.group_by("constraint")
        .agg(
            pl.len().alias("answers"),
            pl.col("passed").mean().round(3).alias("strict"),
            pl.col("loose").mean().round(3).alias("loose"),
        )
        .sort("constraint")
        if out.checks.height
        else out.checks
    )
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "generations", out, ["prompt", "output"]),
            "personas_used": chosen.height,
            "answers_checked": out.checks["row_id"].n_unique() if out.checks.height else 0,
            "rows": out.rows.height,
            "preference_pairs": out.pairs.height,
            "pass_rate_by_constraint": md_table(by_kind, list(by_kind.columns), n=30),
            "lineage_sample": lineage_markdown(lk, out.pairs["pair_id"].head(1).to_list(), days),
        },
        check_results=generation_checks(lk, day, out, config.checks),
    )
