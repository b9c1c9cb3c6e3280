"""``conversations``: multi-turn dialogues with each persona as the user simulator."""

import dagster as dg
from pydantic import Field

from personahub_dagster.core.stages.conversations import conversations
from personahub_dagster.core.stages.synthesis import select_personas
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.metadata import lineage_markdown, progress_logger, warn_if_over_budget
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.llm_stage import (
    LLMStageConfig,
    generation_checks,
    llm_asset,
    stage_metadata,
)


class ConversationsConfig(LLMStageConfig):
    n_personas: int = Field(default=4, ge=1, description="Conversations (one a persona).")
    turns: int = Field(default=3, ge=1, le=20, description="User–assistant exchanges at most.")
    partitions: list[str] | None = Field(
        default=None, description="Hub days to draw from (default: the run's)."
    )
    seed: int = 0
    user_template: str = "conversation_user"
    answer_template: str = "assistant_response"
    checks: CheckThresholds = CheckThresholds()


@llm_asset(
    "generations",
    ["reject_rate", "not_empty", "lineage"],
    name="conversations",
    deps=[persona_hub],
    group_name="post_training",
)
def conversations_asset(
    context, config: ConversationsConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Dialogues of up to ``turns`` exchanges, the persona playing the user with a need of its own and
    the assistant answering with the whole dialogue in view; each turn a ``conversation_turns`` row."""
    lk, day = lake.lake(context), partition_of(context)
    days = config.partitions or [day]
    chosen = select_personas(
        lk.read("hub", partitions=days), config.n_personas, f"{config.seed}:conversation"
    )
    out = conversations(
        chosen,
        llm.gateway(lk, context, config),
        prompts.template(config.user_template),
        prompts.template(config.answer_template),
        partition=day,
        turns=config.turns,
        progress=progress_logger(context, "conversations"),
    )
    lk.write_many(
        {"generations": out.rows, "conversation_turns": out.turns, "rejects": out.rejects},
        producer="conversations",
        partition=day,
    )
    warn_if_over_budget(context, out.stats)
    turns = out.turns.group_by("conversation_id").len()["len"] if out.turns.height else None
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "generations", out, ["prompt", "output"]),
            "conversations": out.rows.height,
            "turns": out.turns.height,
            "mean_messages": round(float(turns.mean()), 2) if turns is not None else 0.0,
            "lineage_sample": lineage_markdown(lk, out.turns["turn_id"].tail(1).to_list(), days),
        },
        check_results=generation_checks(lk, day, out, config.checks),
    )
