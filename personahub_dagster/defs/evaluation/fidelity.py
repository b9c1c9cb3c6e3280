"""``persona_fidelity``: whether the day's generated rows reflect their personas (retrieval, lift,
an optional judge, diversity), per data type and prompting mode, with a floor checked."""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.evaluation.fidelity import FidelityConfig, day_fidelity
from personahub_dagster.core.hub.sample import hub_sample, sample_vectors
from personahub_dagster.defs.metadata import md_table
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import EmbedderResource, LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.llm_stage import LLMStageConfig, commit_stage, llm_asset, stage_metadata


class PersonaFidelityConfig(LLMStageConfig):
    sample_rows: int = Field(default=200, ge=1, description="Generated rows measured (seeded sample).")
    candidates: int = Field(default=10, ge=2, description="k: the row's persona among k - 1 others.")
    lift_rows: int = Field(default=20, ge=0, description="Rows per data type asked again (0: no lift).")
    judge: bool = Field(default=False, description="Also score persona adherence 1-5 with an LLM judge.")
    judge_template: str = "persona_judge"
    hub_partitions: list[str] | None = Field(
        default=None, description="Hub days the personas were drawn from (default: the run's day)."
    )
    seed: int = 0
    min_retrieval_lift: float = Field(
        default=2.0, ge=0, description="fidelity_floor: retrieval top-1 must reach this many times chance."
    )
    min_rows_for_check: int = Field(default=10, ge=1, description="Groups with fewer rows are not checked.")

    def fidelity(self) -> FidelityConfig:
        return FidelityConfig(self.sample_rows, self.candidates, self.lift_rows, self.seed)


def floor_check(metrics: pl.DataFrame, config: PersonaFidelityConfig) -> dg.AssetCheckResult:
    """Warn when a (data type, mode)'s retrieval accuracy is under ``min_retrieval_lift`` × chance."""
    top1 = metrics.filter(
        (pl.col("metric") == "retrieval_top1") & (pl.col("rows") >= config.min_rows_for_check)
    )
    low = top1.filter(pl.col("value") < pl.col("baseline") * config.min_retrieval_lift)
    return dg.AssetCheckResult(
        check_name="fidelity_floor",
        passed=low.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "groups_checked": top1.height,
            "min_retrieval_lift": config.min_retrieval_lift,
            "below": dg.MetadataValue.json(
                low.select("data_type", "prompting_mode", "value", "baseline").to_dicts()
            ),
        },
    )


def persona_fidelity_asset(synthesized: list[str]) -> dg.AssetsDefinition:
    """``persona_fidelity`` after the registry's synthesis assets (built with them)."""

    @llm_asset(
        "persona_fidelity",
        ["fidelity_floor"],
        name="persona_fidelity",
        deps=synthesized,
        group_name="evaluation",
    )
    def persona_fidelity(
        context: dg.AssetExecutionContext,
        config: PersonaFidelityConfig,
        lake: LakeResource,
        llm: LLMResource,
        embedder: EmbedderResource,
        prompts: PromptsResource,
    ) -> dg.MaterializeResult:
        """Does each generated row reflect its persona? On a seeded sample of the day's rows: its own
        persona retrieved out of k by the output's embedding (against chance 1/k), the output's
        closeness to its persona beside the same prompt's output with no persona and with a distant
        one, an optional judge's 1-5 score, and distinct-n and Vendi diversity."""
        lk, day = lake.lake(context), partition_of(context)
        sample = hub_sample(lk)
        if sample is None or sample.is_empty():
            raise dg.Failure("the hub has no saved state yet: materialize persona_hub first")
        generations = lk.read("generations", partitions=[day])
        hub = lk.read("hub", partitions=config.hub_partitions or [day])
        types = prompts.templates_of(generations["data_type"].unique())
        gateway = llm.gateway(lk, context, config)
        out, unmatched = day_fidelity(
            generations,
            hub,
            sample,
            sample_vectors(sample),
            embedder.embedder(),
            gateway,
            types,
            config.fidelity(),
            day,
            prompts.template(config.judge_template) if config.judge else None,
        )
        if unmatched:
            context.log.warning(
                f"{unmatched} rows' personas are not in the hub of {config.hub_partitions or [day]}: not "
                "measured (set hub_partitions to the days the synthesis drew from)"
            )
        commit_stage(context, lk, "persona_fidelity", out)
        metrics = out.rows
        wide = (
            metrics.pivot("metric", index=["data_type", "prompting_mode"], values="value")
            if metrics.height
            else metrics
        )
        return dg.MaterializeResult(
            metadata={
                **stage_metadata(lk, "persona_fidelity", out),
                "rows_not_measured": unmatched,
                "fidelity": md_table(
                    wide.with_columns(pl.col(pl.Float64).round(3)), list(wide.columns), n=40
                ),
            },
            check_results=[floor_check(metrics, config)],
        )

    return persona_fidelity
