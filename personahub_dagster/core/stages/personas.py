"""Text-to-Persona and Persona-to-Persona (Persona Hub §1–2): prompt, call, parse, validate.

Both stages return three things: the accepted ``personas`` rows, the ``rejects`` rows (every answer
that failed to parse, with its reason and raw text) and the gateway statistics. Every persona carries
``source_text_id`` — the text its chain started from — so lineage never needs more than one hop of
SQL to reach the source, and ``parent_persona_id`` + ``relation`` + ``hop`` for the chain itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Literal

import polars as pl

from personahub_dagster.core.config.ids import content_id, digest
from personahub_dagster.core.lake.schemas import now_utc
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.language import (
    ENGLISH,
    UNDETERMINED,
    detect_language,
    detect_languages,
    in_language,
    written_in,
)
from personahub_dagster.core.stages.parsing import (
    DEFAULT_FILTERS,
    PersonaFields,
    PersonaFilters,
    normalize_for_match,
    parse_persona,
    parse_relation,
)
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Answers, Parsed, Progress, StageOutput, run_stage

PersonaLanguage = Literal["english", "source"]


def _writes_in(locale: str | None, persona_language: PersonaLanguage) -> str | None:
    """The language a persona is asked for: its locale's in ``source`` mode, else English (None)."""
    if persona_language == "source" and locale not in (None, ENGLISH, UNDETERMINED):
        return locale
    return None


def _parse_in(
    raw: str | None, source: str | None, filters: PersonaFilters, language: str | None
) -> tuple[PersonaFields | None, str | None]:
    """:func:`parse_persona`, with the language gate moved to ``language`` when one was asked for."""
    if language is None:
        return parse_persona(raw, source, filters)
    fields, reason = parse_persona(raw, source, replace(filters, language=None))
    if fields is not None and not written_in(fields.persona, language):
        return None, f"wrong_language: asked {language}, got {detect_language(fields.persona)}"
    return fields, reason


def _persona_row(fields: PersonaFields, res: LLMResult, provenance: dict, **columns: object) -> dict:
    """A ``personas`` row: the parsed fields, where they came from (model, prompt, request, run) and
    the stage's own columns (``locale``, ``language`` among them)."""
    return {
        **columns,
        **provenance,
        "request_hash": res.request_hash,
        "persona": fields.persona,
        "occupation": fields.occupation,
        "domain": fields.domain,
        "expertise_level": fields.expertise_level,
    }


def _provenance(gateway: LLMGateway, template: PromptTemplate, partition: str) -> dict:
    return {
        "model": gateway.config.model,
        "prompt_hash": template.template_hash,
        "created_at": now_utc(),
        "partition": partition,
    }


def text_to_persona(
    texts: pl.DataFrame,
    gateway: LLMGateway,
    template: PromptTemplate,
    *,
    perspectives: list[str],
    granularity: str = "fine",
    max_text_tokens: int = 1024,
    filters: PersonaFilters = DEFAULT_FILTERS,
    partition: str,
    stage: str = "text_personas",
    progress: Progress | None = None,
    persona_language: PersonaLanguage = "english",
) -> StageOutput:
    """One persona per (text, perspective); every miss is a ``rejects`` row with its reason.

    Texts longer than ``max_text_tokens`` (counted with the model's own tokenizer where known) are
    cut at a word boundary and the persona row says ``text_truncated`` — never silently.

    Every persona's ``locale`` is its text's language (the ``language`` column, detected where an
    older row lacks it). ``persona_language="english"`` (the paper's way, and the prompts' language)
    asks for English whatever the text; ``"source"`` asks for the text's language and rejects an answer
    in another one (``wrong_language``). ``language`` records what the persona is written in.
    """
    phrases: dict[str, str] = template.extras.get("perspectives", {})
    grains: dict[str, str] = template.extras.get("granularity", {})
    unknown = [p for p in perspectives if p not in phrases]
    if unknown:
        raise ValueError(f"unknown perspectives {unknown}; the template defines {sorted(phrases)}")
    if granularity not in grains:
        raise ValueError(f"unknown granularity {granularity!r}; the template defines {sorted(grains)}")

    provenance = _provenance(gateway, template, partition)
    texts = _with_language(texts)

    def requests() -> Iterator[LLMRequest]:  # built as the gateway asks: calls start with the first
        for row in texts.select("text_id", "text", "language").iter_rows(named=True):
            text, truncated = gateway.truncate(row["text"], max_text_tokens)
            asked = _writes_in(row["language"], persona_language)
            for perspective in perspectives:
                messages = template.render(
                    text=text,
                    perspective=perspective,
                    perspective_phrase=phrases[perspective],
                    granularity_instruction=grains[granularity],
                )
                yield LLMRequest(
                    f"{row['text_id']}|{perspective}",
                    in_language(messages, asked),
                    dict(template.params),
                    context=(row["text_id"], perspective, row["text"], truncated, row["language"], asked),
                )

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        text_id, perspective, text, truncated, locale, asked = request.context
        fields, reason = _parse_in(res.content, text, filters, asked)
        if fields is None:
            return None, reason
        row = _persona_row(
            fields,
            res,
            provenance,
            persona_id=content_id("persona", "text", text_id, perspective, fields.persona),
            method="text",
            perspective=perspective,
            source_text_id=text_id,
            hop=0,
            text_truncated=truncated,
            locale=locale,
            language=asked or ENGLISH,
        )
        return row, None

    out = run_stage(gateway, requests(), parse, stage=stage, progress=progress).output(
        "personas", stage, partition
    )
    out.rows = out.rows.unique("persona_id", keep="first", maintain_order=True)
    return out


def _with_language(texts: pl.DataFrame) -> pl.DataFrame:
    """``texts`` with a ``language`` for every row: detected for rows ingested before it was stored."""
    if "language" not in texts.columns:
        texts = texts.with_columns(language=pl.lit(None, pl.Utf8))
    missing = texts["language"].is_null()
    if not missing.any():
        return texts
    todo = texts.filter(missing)
    found = dict(zip(todo["text_id"], detect_languages(todo["text"].to_list()), strict=True))
    return texts.with_columns(
        language=pl.coalesce("language", pl.col("text_id").replace_strict(found, default=None))
    )


def persona_to_persona(
    seeds: pl.DataFrame,
    gateway: LLMGateway,
    template: PromptTemplate,
    *,
    hops: int = 6,
    fanout: int = 1,
    filters: PersonaFilters = DEFAULT_FILTERS,
    partition: str,
    stage: str = "expanded_personas",
    progress: Progress | None = None,
    on_hop: Callable[[int, int, int], None] | None = None,
    persona_language: PersonaLanguage = "english",
) -> StageOutput:
    """Expand ``seeds`` through close relationships, ``hops`` times, ``fanout`` relations per persona.

    Hop k+1 prompts only the personas accepted at hop k, so an interrupted run that is started again
    replays hops 1..k from the response cache (no new calls) and resumes at the hop it stopped in. A
    persona whose text was already seen (in the seeds or any earlier hop) is cut with reason
    ``known_persona``: it would only re-derive a branch that already exists, and cycles
    (nurse → patient → nurse) end there.

    If the template lists ``relations``, each (parent, fan-out slot) is assigned one of them by a
    seeded hash — reproducible, spread evenly, and the label is exact; the model only describes the
    person. Without the list the model names the relation itself (``Relation:``/``Persona:`` lines).
    Fan-out slots also differ in sampling seed, which is part of the cache key.

    A related persona inherits its parent's ``locale``; ``persona_language`` is read as in
    :func:`text_to_persona`.
    """
    relations: list[str] = list(template.extras.get("relations") or [])
    known = {normalize_for_match(p) for p in seeds["persona"].to_list()}
    carried = ("persona_id", "persona", "source_text_id", "locale")
    if "locale" not in seeds.columns:
        seeds = seeds.with_columns(locale=pl.lit(None, pl.Utf8))
    frontier = seeds.select(carried).to_dicts()
    base_seed = gateway.config.seed or 0
    provenance = _provenance(gateway, template, partition)

    def requests(parents: list[dict]) -> Iterator[LLMRequest]:
        for parent in parents:
            for k in range(fanout):
                relation = (
                    relations[int(digest(parent["persona_id"], k)[:8], 16) % len(relations)]
                    if relations
                    else None
                )
                asked = _writes_in(parent["locale"], persona_language)
                yield LLMRequest(
                    f"{parent['persona_id']}|r{k}",
                    in_language(template.render(persona=parent["persona"], relation=relation or ""), asked),
                    {**template.params, "seed": base_seed + k},
                    context=(parent, relation, asked),
                )

    def parse(request: LLMRequest, res: LLMResult, hop: int) -> Parsed:
        parent, relation, asked = request.context
        parsed, reason = _parse_expansion(res.content, parent["persona"], relation, filters, asked)
        if parsed is not None and normalize_for_match(parsed[1].persona) in known:
            parsed, reason = None, "known_persona"
        if parsed is None:
            return None, reason
        relation, fields = parsed
        known.add(normalize_for_match(fields.persona))
        row = _persona_row(
            fields,
            res,
            provenance,
            persona_id=content_id("persona", "relation", parent["persona_id"], relation, fields.persona),
            method="relation",
            source_text_id=parent["source_text_id"],
            parent_persona_id=parent["persona_id"],
            relation=relation,
            hop=hop,
            text_truncated=False,
            locale=parent["locale"],
            language=asked or ENGLISH,
        )
        return row, None

    out = Answers()
    for hop in range(1, hops + 1):
        if not frontier:
            break
        answers = run_stage(
            gateway,
            requests(frontier),
            lambda request, res, hop=hop: parse(request, res, hop),
            stage=stage,
            progress=progress,
        )
        out.merge(answers)
        if on_hop:
            on_hop(hop, len(answers.rows), len(answers.rejects))
        frontier = [{k: row[k] for k in carried} for row in answers.rows]
    return out.output("personas", stage, partition)


def _parse_expansion(
    raw: str | None, parent: str, relation: str | None, filters: PersonaFilters, language: str | None
) -> tuple[tuple[str, PersonaFields] | None, str | None]:
    """Assigned relation: the answer is just the persona. Free relation: ``Relation:``/``Persona:`` lines."""
    if relation is None:
        if language is not None:
            filters = replace(filters, language=None)
        return parse_relation(raw, parent, filters)
    fields, reason = _parse_in(raw, None, filters, language)
    if fields is None:
        return None, reason
    if normalize_for_match(fields.persona) == normalize_for_match(parent):
        return None, "same_as_parent"
    return (relation, fields), None
