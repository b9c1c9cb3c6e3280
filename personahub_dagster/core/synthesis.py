"""Persona-driven synthesis (Persona Hub §4): insert a persona into a data-synthesis prompt.

Three prompting modes, as in the paper:

* ``zero_shot`` — instruction + persona; the most creative.
* ``few_shot`` — instruction + example outputs + persona; outputs follow the examples' format.
* ``persona_few_shot`` — each example is a (persona, output) pair; best persona adherence.

Personas are chosen deterministically (by a seeded hash of their ids), so the same hub, seed and
count always select the same personas and a re-run is answered from the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from personahub_dagster.core.ids import content_id, digest
from personahub_dagster.core.lake import now_utc, rows_frame
from personahub_dagster.core.llm import LLMGateway, LLMRequest
from personahub_dagster.core.parsing import parse_math_problem
from personahub_dagster.core.prompts import PromptTemplate
from personahub_dagster.core.stage import Progress, StageOutput, reject, reject_rows

MODES = ("zero_shot", "few_shot", "persona_few_shot")

VALIDATORS: dict[str, Callable[[str | None], tuple[str | None, str | None]]] = {
    "math_problem": parse_math_problem,
}


def select_personas(hub: pl.DataFrame, n: int | None, seed: int = 0) -> pl.DataFrame:
    """Up to ``n`` non-duplicate personas, in a seeded pseudo-random but reproducible order."""
    kept = hub.filter(pl.col("dup_of").is_null())
    order = [digest("select", seed, pid) for pid in kept["persona_id"].to_list()]
    kept = kept.with_columns(_order=pl.Series(order, dtype=pl.Utf8)).sort("_order").drop("_order")
    return kept if n is None else kept.head(n)


def synthesize(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    template: PromptTemplate,
    *,
    data_type: str,
    mode: str = "zero_shot",
    exemplars: tuple[dict[str, str], ...] = (),
    variables: dict[str, object] | None = None,
    partition: str,
    stage: str,
    progress: Progress | None = None,
) -> StageOutput:
    """One ``data_type`` item per persona; ``variables`` fill the template's other slots (focus, …)."""
    if mode not in MODES:
        raise ValueError(f"unknown prompting mode {mode!r}; choose one of {MODES}")
    if mode != "zero_shot" and not exemplars:
        raise ValueError(f"prompting mode {mode!r} needs exemplars")
    if mode == "persona_few_shot" and not all(ex.get("persona") for ex in exemplars):
        raise ValueError("persona_few_shot needs a persona on every exemplar")
    validate = VALIDATORS[data_type]
    slots = {**template.extras.get("defaults", {}), **(variables or {})}
    examples = list(exemplars) if mode != "zero_shot" else []

    requests, meta = [], {}
    for p in personas.select("persona_id", "persona", "source_text_id").iter_rows(named=True):
        messages = template.render(persona=p["persona"], mode=mode, examples=examples, **slots)
        requests.append(LLMRequest(p["persona_id"], messages, dict(template.params)))
        meta[p["persona_id"]] = (p["source_text_id"], messages[-1]["content"])

    results, stats = gateway.generate(requests, stage, progress)
    rows, rejects = [], []
    ts = now_utc()
    for res in results:
        output, reason = validate(res.content) if res.ok else (None, None)
        if output is None:
            rejects.append(reject(res, reason))
            continue
        source_text_id, prompt = meta[res.key]
        rows.append(
            {
                "row_id": content_id("generation", data_type, mode, res.key, res.request_hash),
                "data_type": data_type,
                "prompting_mode": mode,
                "persona_id": res.key,
                "source_text_id": source_text_id,
                "prompt": prompt,
                "output": output,
                "model": gateway.config.model,
                "prompt_hash": template.template_hash,
                "request_hash": res.request_hash,
                "created_at": ts,
                "partition": partition,
            }
        )
    return StageOutput(rows_frame("generations", rows), reject_rows(rejects, stage, partition), stats)
