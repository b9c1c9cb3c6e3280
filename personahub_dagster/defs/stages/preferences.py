"""``preference_pairs``: the day's rows of the registry's data types, each against a second answer to the
same prompt, judged by a model with a rubric."""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.evaluation.fidelity import seeded_sample
from personahub_dagster.core.stages.preferences import judged_pairs
from personahub_dagster.core.stages.stage import StageOutput
from personahub_dagster.defs.metadata import lineage_markdown, md_table, progress_logger, warn_if_over_budget
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.llm_stage import LLMStageConfig, llm_asset, stage_metadata


class PreferencePairsConfig(LLMStageConfig):
    n_rows: int = Field(default=16, ge=1, description="Generated rows made into pairs (a seeded sample).")
    data_types: list[str] | None = Field(
        default=None, description="Which types (default: every registry type)."
    )
    temperature: float | None = Field(
        default=1.0, description="The second answer's temperature (null: the second model's own)."
    )
    second_model: str | None = Field(default=None, description="litellm model for the second answer.")
    judge_model: str | None = Field(
        default=None, description="litellm model that judges (default: the llm's)."
    )
    judge_template: str = "pair_judge"
    hub_partitions: list[str] | None = Field(
        default=None, description="Hub days the rows' personas were drawn from (default: the run's)."
    )
    seed: int = 0


def preference_pairs_asset(synthesized: list[str]) -> dg.AssetsDefinition:
    """``preference_pairs`` after the registry's synthesis assets (built with them)."""

    @llm_asset("preference_pairs", name="preference_pairs", deps=synthesized, group_name="post_training")
    def preference_pairs(
        context, config: PreferencePairsConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
    ) -> dg.MaterializeResult:
        """DPO pairs for data no code can check: a seeded sample of the day's rows, the same prompt
        answered again (another temperature or model), a judge model picking the better answer by a
        rubric with the answers in a seeded order, its reason kept. In TRL's columns in ``datasets``."""
        lk, day = lake.lake(context), partition_of(context)
        made = lk.read("generations", partitions=[day])
        templates = prompts.templates_of(config.data_types or made["data_type"].unique())
        made = made.filter(pl.col("data_type").is_in(list(templates)))  # the registry's types
        hub = lk.read("hub", partitions=config.hub_partitions or [day]).select("persona_id", "persona")
        rows = seeded_sample(made.join(hub.unique("persona_id"), on="persona_id"), config.n_rows, config.seed)
        out = judged_pairs(
            rows,
            llm.gateway(lk, context, config, model=config.second_model),
            llm.gateway(lk, context, config, model=config.judge_model),
            templates,
            prompts.template(config.judge_template),
            partition=day,
            temperature=config.temperature,
            seed=config.seed,
            progress=progress_logger(context, "preference_pairs"),
        )
        lk.write_many(
            {"preference_pairs": out.pairs, "rejects": out.rejects},
            producer="preference_pairs",
            partition=day,
        )
        warn_if_over_budget(context, out.stats)
        own_won = out.pairs["chosen_row_id"].is_not_null().sum() if out.pairs.height else 0
        return dg.MaterializeResult(
            metadata={
                **stage_metadata(
                    lk, "preference_pairs", StageOutput(out.pairs, out.rejects, out.stats), ["reason"]
                ),
                "rows_sampled": rows.height,
                "pairs": out.pairs.height,
                "first_answer_chosen": int(own_won),
                "by_type": md_table(out.pairs.group_by("data_type").len(), ["data_type", "len"]),
                "lineage_sample": lineage_markdown(lk, out.pairs["pair_id"].head(1).to_list(), [day]),
            }
        )

    return preference_pairs
