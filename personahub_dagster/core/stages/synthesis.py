"""Persona-driven synthesis (Persona Hub §4): insert a persona into a data-synthesis prompt.

Three prompting modes, as in the paper:

* ``zero_shot`` — instruction + persona; the most creative.
* ``few_shot`` — instruction + example outputs + persona; outputs follow the examples' format.
* ``persona_few_shot`` — each example is a (persona, output) pair; best persona adherence. The
  examples' personas come from running our own Text-to-Persona on the example outputs
  (:func:`exemplar_personas`), as the paper does — cached like every other call.

Personas are chosen deterministically (by a seeded hash of their ids), so the same hub, seed and
count always select the same personas and a re-run is answered from the cache. Every mode of a run
uses the same personas, so the modes can be compared persona by persona.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl

from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.schemas import now_utc
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.data_types import MODES, DataType
from personahub_dagster.core.stages.language import detect_language, in_language
from personahub_dagster.core.stages.mix import Raking, rake, sample
from personahub_dagster.core.stages.parsing import DEFAULT_FILTERS, PersonaFilters, is_echo
from personahub_dagster.core.stages.personas import text_to_persona
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Parse, Parsed, Progress, StageOutput, reject_rows, run_stage
from personahub_dagster.core.stages.validators import Validator

Exemplar = dict[str, str]


def select_personas(
    hub: pl.DataFrame, n: int | None, seed: int | str = 0, partitions: Sequence[str] | None = None
) -> pl.DataFrame:
    """Up to ``n`` non-duplicate personas (from ``partitions`` if given), in a seeded pseudo-random
    but reproducible order (a hash of seed and persona id: the same whatever the rows' order)."""
    kept = _kept(hub, partitions)
    return sample(kept, kept.height if n is None else n, None, seed)


def select_to_mix(
    hub: pl.DataFrame,
    n: int | None,
    target: Mapping[str, Mapping[str, float]],
    seed: int | str = 0,
    partitions: Sequence[str] | None = None,
    max_weight: float = 50.0,
) -> tuple[pl.DataFrame, Raking]:
    """Up to ``n`` non-duplicate personas drawn so that their mix over the hub's columns meets
    ``target`` as far as the hub allows (:mod:`.mix`), and the raking that says how far that was."""
    kept = _kept(hub, partitions)
    raking = rake(kept, target, max_weight=max_weight)
    return sample(kept, kept.height if n is None else n, raking.weights, seed), raking


def _kept(hub: pl.DataFrame, partitions: Sequence[str] | None) -> pl.DataFrame:
    kept = hub.filter(pl.col("dup_of").is_null())
    return kept.filter(pl.col("partition").is_in(list(partitions))) if partitions else kept


def exemplar_personas(
    exemplars: Sequence[Exemplar],
    gateway: LLMGateway,
    text_to_persona_template: PromptTemplate,
    *,
    perspective: str = "write",
    filters: PersonaFilters = DEFAULT_FILTERS,
    partition: str,
    stage: str,
) -> tuple[list[Exemplar], pl.DataFrame]:
    """Give each exemplar a persona by Text-to-Persona on its output (an exemplar that already names
    a persona keeps it). Returns the exemplars that have one, and rejects for those that did not get
    one — the persona-enhanced mode then runs with fewer examples instead of failing."""
    missing = [ex for ex in exemplars if not ex.get("persona")]
    found: dict[str, str] = {}
    rejects = reject_rows([], stage, partition)
    if missing:
        texts = pl.DataFrame(
            {
                "text_id": [content_id("text", ex["output"]) for ex in missing],
                "text": [ex["output"] for ex in missing],
            }
        )
        out = text_to_persona(
            texts,
            gateway,
            text_to_persona_template,
            perspectives=[perspective],
            filters=filters,
            partition=partition,
            stage=stage,
        )
        found = dict(zip(out.rows["source_text_id"], out.rows["persona"], strict=True))
        rejects = out.rejects
    with_persona = []
    for ex in exemplars:
        persona = ex.get("persona") or found.get(content_id("text", ex["output"]))
        if persona:
            with_persona.append({**ex, "persona": persona})
    return with_persona, rejects


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def trim_to_sentence(text: str) -> str | None:
    """``text`` up to the end of its last complete sentence, or None if it has none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else None


def _check(
    res: LLMResult, validate: Validator, persona: str, examples: Sequence[Exemplar], on_truncation: str
) -> tuple[str | None, str | None]:
    """The type's validator, plus what every type must pass: an answer cut off by the token limit is
    rejected (or trimmed to its last sentence, where the type allows), and it is neither a copy of an
    exemplar (few-shot prompts invite that) nor the persona repeated back."""
    content = res.content
    if res.finish_reason == "length":
        content = trim_to_sentence(content) if on_truncation == "trim" else None
        if content is None:
            return None, "truncated"
    output, reason = validate(content)
    if output is None:
        return None, reason
    if any(is_echo(output, ex["output"]) for ex in examples):
        return None, "copies_exemplar"
    if is_echo(output, persona):
        return None, "echo_of_persona"
    return output, None


def synthesize(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    data_type: DataType,
    template: PromptTemplate,
    *,
    stage: str,
    progress: Progress | None = None,
    **options: Any,
) -> StageOutput:
    """One ``data_type`` item per persona and prompting mode: :func:`synthesis_stage`'s requests
    (``options`` are its keyword arguments), asked and parsed by :func:`~.stage.run_stage`."""
    requests, parse = synthesis_stage(personas, gateway, data_type, template, **options)
    answers = run_stage(gateway, requests, parse, stage=stage, progress=progress)
    return answers.output("generations", stage, options["partition"])


def synthesis_stage(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    data_type: DataType,
    template: PromptTemplate,
    *,
    modes: Sequence[str] = MODES,
    exemplars: dict[str, list[Exemplar]] | None = None,
    variables: dict[str, Any] | None = None,
    partition: str,
    params: dict[str, Any] | None = None,
    in_persona_language: bool = False,
) -> tuple[Iterator[LLMRequest], Parse]:
    """The requests of a synthesis stage and the parse of their answers: one ``data_type`` item per
    persona and prompting mode. A stage may read the answers its own way (the diversity evaluation also
    keeps answers the validator refused); each request's context is ``(mode, persona row, messages)``.

    ``exemplars`` maps a mode to its examples (``few_shot``: outputs; ``persona_few_shot``: outputs
    with personas); ``variables`` fill the template's other slots (focus, difficulty, world, …);
    ``params`` override sampling parameters (the diversity evaluation runs at temperature 0).
    ``in_persona_language`` asks for each item in its persona's locale (the ``locale`` column; English
    where it is unknown); every row records the language its output is in.
    """
    exemplars = exemplars or {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown prompting mode {mode!r}; choose one of {MODES}")
        if mode != "zero_shot" and not exemplars.get(mode):
            raise ValueError(f"prompting mode {mode!r} needs exemplars")
        if mode == "persona_few_shot" and not all(ex.get("persona") for ex in exemplars[mode]):
            raise ValueError("persona_few_shot needs a persona on every exemplar")
    validate = data_type.validator()
    slots = {**data_type.variables, **(variables or {})}
    if "world" not in slots and (world := data_type.world_text()) is not None:
        slots["world"] = world
    constraints = json.dumps({k: v for k, v in slots.items() if k != "world" and v}, sort_keys=True)
    params = {**template.params, **data_type.params, **(params or {})}

    model, ts = gateway.config.model, now_utc()

    if "locale" not in personas.columns:
        personas = personas.with_columns(locale=pl.lit(None, pl.Utf8))

    def requests() -> Iterator[LLMRequest]:
        for mode in modes:
            examples = exemplars.get(mode, []) if mode != "zero_shot" else []
            for p in personas.select("persona_id", "persona", "source_text_id", "locale").iter_rows(
                named=True
            ):
                messages = template.render(persona=p["persona"], mode=mode, examples=examples, **slots)
                messages = in_language(messages, p["locale"] if in_persona_language else None)
                yield LLMRequest(f"{mode}|{p['persona_id']}", messages, params, context=(mode, p, messages))

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        mode, persona, messages = request.context
        output, reason = _check(
            res, validate, persona["persona"], exemplars.get(mode, []), data_type.on_truncation
        )
        if output is None:
            return None, reason
        row = {
            "row_id": content_id("generation", data_type.name, mode, persona["persona_id"], res.request_hash),
            "data_type": data_type.name,
            "description": data_type.description,
            "prompting_mode": mode,
            "constraints": constraints,
            "persona_id": persona["persona_id"],
            "source_text_id": persona["source_text_id"],
            "prompt": messages[-1]["content"],
            "output": output,
            "model": model,
            "prompt_hash": template.template_hash,
            "request_hash": res.request_hash,
            "created_at": ts,
            "partition": partition,
            "language": detect_language(output),
        }
        return row, None

    return requests(), parse
