"""Text-to-Persona and Persona-to-Persona (Persona Hub §1–2): prompt, call, parse, validate.

Both stages return three things: the accepted ``personas`` rows, the ``rejects`` rows (every answer
that failed to parse, with its reason and raw text) and the gateway statistics. Every persona carries
``source_text_id`` — the text its chain started from — so lineage never needs more than one hop of
SQL to reach the source, and ``parent_persona_id`` + ``relation`` + ``hop`` for the chain itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl

from personahub_dagster.core.config.ids import content_id, digest
from personahub_dagster.core.lake.schemas import now_utc
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
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


def _persona_row(fields: PersonaFields, res: LLMResult, provenance: dict, **columns: object) -> dict:
    """A ``personas`` row: the parsed fields, where they came from (model, prompt, request, run) and
    the stage's own columns."""
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
) -> StageOutput:
    """One persona per (text, perspective); every miss is a ``rejects`` row with its reason.

    Texts longer than ``max_text_tokens`` (counted with the model's own tokenizer where known) are
    cut at a word boundary and the persona row says ``text_truncated`` — never silently.
    """
    phrases: dict[str, str] = template.extras.get("perspectives", {})
    grains: dict[str, str] = template.extras.get("granularity", {})
    unknown = [p for p in perspectives if p not in phrases]
    if unknown:
        raise ValueError(f"unknown perspectives {unknown}; the template defines {sorted(phrases)}")
    if granularity not in grains:
        raise ValueError(f"unknown granularity {granularity!r}; the template defines {sorted(grains)}")

    provenance = _provenance(gateway, template, partition)

    def requests() -> Iterator[LLMRequest]:  # built as the gateway asks: calls start with the first
        for row in texts.select("text_id", "text").iter_rows(named=True):
            text, truncated = gateway.truncate(row["text"], max_text_tokens)
            for perspective in perspectives:
                messages = template.render(
                    text=text,
                    perspective=perspective,
                    perspective_phrase=phrases[perspective],
                    granularity_instruction=grains[granularity],
                )
                yield LLMRequest(
                    f"{row['text_id']}|{perspective}",
                    messages,
                    dict(template.params),
                    context=(row["text_id"], perspective, row["text"], truncated),
                )

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        text_id, perspective, text, truncated = request.context
        fields, reason = parse_persona(res.content, text, filters)
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
        )
        return row, None

    out = run_stage(gateway, requests(), parse, stage=stage, progress=progress).output(
        "personas", stage, partition
    )
    out.rows = out.rows.unique("persona_id", keep="first", maintain_order=True)
    return out


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
    """
    relations: list[str] = list(template.extras.get("relations") or [])
    known = {normalize_for_match(p) for p in seeds["persona"].to_list()}
    frontier = seeds.select("persona_id", "persona", "source_text_id").to_dicts()
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
                yield LLMRequest(
                    f"{parent['persona_id']}|r{k}",
                    template.render(persona=parent["persona"], relation=relation or ""),
                    {**template.params, "seed": base_seed + k},
                    context=(parent, relation),
                )

    def parse(request: LLMRequest, res: LLMResult, hop: int) -> Parsed:
        parent, relation = request.context
        parsed, reason = _parse_expansion(res.content, parent["persona"], relation, filters)
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
        frontier = [{k: row[k] for k in ("persona_id", "persona", "source_text_id")} for row in answers.rows]
    return out.output("personas", stage, partition)


def _parse_expansion(
    raw: str | None, parent: str, relation: str | None, filters: PersonaFilters
) -> tuple[tuple[str, PersonaFields] | None, str | None]:
    """Assigned relation: the answer is just the persona. Free relation: ``Relation:``/``Persona:`` lines."""
    if relation is None:
        return parse_relation(raw, parent, filters)
    fields, reason = parse_persona(raw, filters=filters)
    if fields is None:
        return None, reason
    if normalize_for_match(fields.persona) == normalize_for_match(parent):
        return None, "same_as_parent"
    return (relation, fields), None
