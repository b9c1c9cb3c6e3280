"""Personas from the day's texts: ``text_personas`` (Text-to-Persona) and ``expanded_personas``
(Persona-to-Persona, several hops), each an LLM stage with its rejects and checks."""

from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.stages.parsing import PersonaFilters
from personahub_dagster.core.stages.personas import persona_to_persona, text_to_persona
from personahub_dagster.core.stages.stage import StageOutput
from personahub_dagster.defs.evaluation import checks
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.metadata import (
    bar_chart,
    counts_of,
    progress_logger,
)
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import (
    LakeResource,
    LLMResource,
    PromptsResource,
)
from personahub_dagster.defs.stages.ingest import raw_texts
from personahub_dagster.defs.stages.llm_stage import LLMStageConfig, commit_stage, llm_asset, stage_metadata

HUB_COMMIT_ATTEMPTS = 5


class PersonaFilterConfig(dg.Config):
    """Quality gates for every persona; each failure is a counted reason in ``rejects``."""

    min_words: int = 4
    max_words: int = 80
    max_sentences: int = 2
    language: str | None = Field(default="en", description="en, or null to accept any language")
    require_person: bool = True

    def filters(self) -> PersonaFilters:
        return PersonaFilters(**self.model_dump())


PERSONA_LANGUAGE = (
    "english: personas in English whatever the text (the paper's way), the text's language kept as "
    "their locale; source: each persona in its text's language"
)


class TextPersonasConfig(LLMStageConfig):
    perspectives: list[str] = Field(default=["read", "write", "like", "dislike"])
    granularity: str = Field(default="fine", description="fine | coarse (see the prompt file)")
    max_text_tokens: int = Field(default=1024, description="Longer texts are cut (and flagged).")
    template: str = Field(default="text_to_persona", description="Prompt file name (…_json: structured)")
    persona_language: Literal["english", "source"] = Field(default="english", description=PERSONA_LANGUAGE)
    filters: PersonaFilterConfig = PersonaFilterConfig()
    checks: CheckThresholds = CheckThresholds()


class ExpandedPersonasConfig(LLMStageConfig):
    hops: int = Field(default=6, ge=0, description="Persona-to-Persona iterations (the paper: 6).")
    fanout: int = Field(default=1, ge=1, description="Relations asked per persona per hop.")
    template: str = Field(default="persona_to_persona", description="…_free: the model names the relation")
    persona_language: Literal["english", "source"] = Field(default="english", description=PERSONA_LANGUAGE)
    filters: PersonaFilterConfig = PersonaFilterConfig()
    checks: CheckThresholds = CheckThresholds()


def _llm_stage_checks(out: StageOutput, t: CheckThresholds) -> list[dg.AssetCheckResult]:
    return [checks.reject_rate(out.rows.height, out.rejects.height, t), checks.not_empty(out.rows.height, t)]


@llm_asset("personas", ["reject_rate", "not_empty"], deps=[raw_texts], group_name="personas")
def text_personas(
    context, config: TextPersonasConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Text-to-Persona: who would read / write / like / dislike each text — one persona per text and
    perspective, each naming the text it came from."""
    lk, day = lake.lake(context), partition_of(context)
    texts = lk.read("source_texts", partitions=[day])
    out = text_to_persona(
        texts,
        llm.gateway(lk, context, config),
        prompts.template(config.template),
        perspectives=config.perspectives,
        granularity=config.granularity,
        max_text_tokens=config.max_text_tokens,
        filters=config.filters.filters(),
        partition=day,
        progress=progress_logger(context, "text_personas"),
        persona_language=config.persona_language,
    )
    per_perspective = dict(out.rows.group_by("perspective").len().iter_rows()) if out.rows.height else {}
    commit_stage(context, lk, "personas", out)
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "personas", out, ["persona_id", "perspective", "persona"]),
            "texts": texts.height,
            "texts_truncated": out.rows.filter(pl.col("text_truncated"))["source_text_id"].n_unique(),
            "personas": out.rows.height,
            "personas_by_perspective": dg.MetadataValue.json(per_perspective),
            "texts_by_language": dg.MetadataValue.json(counts_of(texts, "language")),
        },
        check_results=_llm_stage_checks(out, config.checks),
    )


@llm_asset("personas", ["reject_rate", "not_empty"], deps=[text_personas], group_name="personas")
def expanded_personas(
    context, config: ExpandedPersonasConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Persona-to-Persona: expand every Text-to-Persona persona through close relationships, hop by hop."""

    def on_hop(hop: int, accepted: int, rejected: int) -> None:
        context.log.info(f"hop {hop}: {accepted} new personas, {rejected} rejected")

    lk, day = lake.lake(context), partition_of(context)
    gateway = llm.gateway(lk, context, config)
    seeds = lk.read("personas", "method = 'text'", partitions=[day])
    out = persona_to_persona(
        seeds,
        gateway,
        prompts.template(config.template),
        hops=config.hops,
        fanout=config.fanout,
        filters=config.filters.filters(),
        partition=day,
        progress=progress_logger(context, "expanded_personas"),
        on_hop=on_hop,
        persona_language=config.persona_language,
    )
    per_hop = (
        {str(h): n for h, n in out.rows.group_by("hop").len().sort("hop").iter_rows()}
        if out.rows.height
        else {}
    )
    commit_stage(context, lk, "personas", out)
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "personas", out, ["persona_id", "hop", "relation", "persona"]),
            "seed_personas": seeds.height,
            "personas": out.rows.height,
            "max_hop": int(out.rows["hop"].max()) if out.rows.height else 0,
            "personas_by_hop": dg.MetadataValue.json(per_hop),
            "hop_distribution": bar_chart(per_hop, "new personas per hop", "hop"),
        },
        check_results=_llm_stage_checks(out, config.checks),
    )
