"""Verifiable instruction following (Tülu 3's persona IF set): a persona's request with one to three
checkable constraints, two answers at two temperatures, each constraint checked by code.

Three things come out, all traceable to the persona and its text:

* ``constraint_checks`` — every answer's verdict on every constraint, strict and loose, as IFEval's (or
  IFBench's) own checker gives it;
* ``generations`` rows (``data_type`` ``verifiable_instruction``) — answers that meet all their
  constraints (strict); an answer that misses one is a ``rejects`` row naming the instructions it failed;
* ``preference_pairs`` — when one answer meets every constraint and the other misses at least one, the
  first is ``chosen`` and the second ``rejected`` (both answers to the identical prompt), the reason naming
  what decided it (the judge is the checker).

The request itself comes from the ``instruction`` template (Persona Hub's instruction type); the
constraints are drawn per persona by a seeded hash from the registry (:mod:`personahub_dagster.core.
instructions`), never a set that no answer can meet, and stored as instruction ids with their kwargs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.config.ids import content_id, digest
from personahub_dagster.core.instructions import FAMILIES, Constraint, check_all, draw
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.stages.parsing import clean_line, is_echo, words
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Answers, Parsed, Progress, reject_rows, run_stage

DATA_TYPE = "verifiable_instruction"


@dataclass
class VerifiableOutput:
    rows: pl.DataFrame  # generations
    checks: pl.DataFrame  # constraint_checks
    pairs: pl.DataFrame  # preference_pairs
    rejects: pl.DataFrame
    stats: GatewayStats


def _task(raw: str | None, persona: str) -> tuple[str | None, str | None]:
    lines = [clean_line(x) for x in (raw or "").splitlines() if clean_line(x)]
    if not lines:
        return None, "empty"
    task = " ".join(lines).strip().strip('"')
    n = len(words(task))
    if n < 5:
        return None, "too_short"
    if n > 150:
        return None, "too_long"
    if is_echo(task, persona):
        return None, "echo_of_persona"
    return task, None


def verifiable_instructions(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    task_template: PromptTemplate,
    answer_template: PromptTemplate,
    *,
    partition: str,
    constraints: tuple[int, int] = (1, 3),
    kinds: Sequence[str] | None = None,
    families: Sequence[str] = FAMILIES,
    temperatures: tuple[float, float] = (0.3, 1.0),
    seed: int | str = 0,
    stage: str = "verifiable_instructions",
    progress: Progress | None = None,
) -> VerifiableOutput:
    """Requests, answers, verdicts and pairs for ``personas`` (``persona_id``, ``persona``,
    ``source_text_id``); ``constraints`` is the (least, most) per request."""
    lo, hi = constraints
    if not 1 <= lo <= hi:
        raise ValueError(f"constraints per request must satisfy 1 <= least <= most, got {constraints}")
    ts, model = now_utc(), gateway.config.model
    answers = Answers()
    people = personas.select("persona_id", "persona", "source_text_id").to_dicts()

    # 1. the persona's request
    tasks: dict[str, str] = {}

    def task_requests() -> Iterator[LLMRequest]:
        for p in people:
            messages = task_template.render(persona=p["persona"], mode="zero_shot", examples=[], focus="")
            yield LLMRequest(f"task|{p['persona_id']}", messages, dict(task_template.params), context=p)

    def parse_task(request: LLMRequest, res: LLMResult) -> Parsed:
        task, reason = _task(res.content, request.context["persona"])
        if task is None:
            return None, reason
        tasks[request.context["persona_id"]] = task
        return {}, None

    answers.merge(run_stage(gateway, task_requests(), parse_task, stage=f"{stage}.tasks", progress=progress))
    answers.rows.clear()

    # 2. the request with its constraints, answered twice
    asked: dict[str, tuple[dict, str, list[Constraint]]] = {}
    for p in people:
        if p["persona_id"] in tasks:
            n = lo + int(digest("constraints", seed, p["persona_id"])[:8], 16) % (hi - lo + 1)
            task = tasks[p["persona_id"]]
            chosen = draw(p["persona_id"], seed, n, task, families=families, kinds=kinds)
            prompt = task + "\n\n" + " ".join(c.describe() for c in chosen)
            asked[p["persona_id"]] = (p, prompt, chosen)
    replies: dict[tuple[str, int], tuple[str, str]] = {}

    def answer_requests() -> Iterator[LLMRequest]:
        for pid, (_, prompt, _c) in asked.items():
            for k, temperature in enumerate(temperatures):
                params = {**answer_template.params, "temperature": temperature}
                yield LLMRequest(
                    f"answer|{pid}|{k}", answer_template.render(prompt=prompt), params, context=(pid, k)
                )

    def parse_answer(request: LLMRequest, res: LLMResult) -> Parsed:
        if not (res.content or "").strip():
            return None, "empty"
        if res.finish_reason == "length":
            return None, "truncated"
        replies[request.context] = (res.content.strip(), res.request_hash)
        return {}, None

    answers.merge(
        run_stage(gateway, answer_requests(), parse_answer, stage=f"{stage}.answers", progress=progress)
    )

    # 3. verdicts, rows, rejects and pairs
    rows, checks, pairs, rejects = [], [], [], []
    for pid, (p, prompt, chosen) in asked.items():
        judged = []
        for k in range(len(temperatures)):
            if (pid, k) not in replies:
                continue
            text, request_hash = replies[(pid, k)]
            row_id = content_id("generation", DATA_TYPE, pid, request_hash)
            verdicts = check_all(text, chosen)
            failed = sorted(v.constraint.id for v in verdicts if not v.strict)
            judged.append((row_id, text, failed))
            checks += [
                {
                    "row_id": row_id,
                    "persona_id": pid,
                    "constraint": v.constraint.id,
                    "family": v.constraint.kind.family,
                    "params": json.dumps(v.constraint.args, sort_keys=True),
                    "passed": v.strict,
                    "loose": v.loose,
                    "detail": "followed" if v.strict else "followed loosely" if v.loose else "not followed",
                }
                for v in verdicts
            ]
            if failed:
                rejects.append(
                    {
                        "input_id": row_id,
                        "request_hash": request_hash,
                        "raw_output": text,
                        "reason": f"constraint_failed: {', '.join(failed)}",
                    }
                )
                continue
            rows.append(
                {
                    "row_id": row_id,
                    "data_type": DATA_TYPE,
                    "description": "verifiable instruction",
                    "prompting_mode": "zero_shot",
                    "constraints": json.dumps([c.to_json() for c in chosen], sort_keys=True),
                    "persona_id": pid,
                    "source_text_id": p["source_text_id"],
                    "prompt": prompt,
                    "output": text,
                    "model": model,
                    "prompt_hash": answer_template.template_hash,
                    "request_hash": request_hash,
                }
            )
        passing = [j for j in judged if not j[2]]
        failing = [j for j in judged if j[2]]
        if passing and failing:  # chosen meets every constraint, rejected misses at least one
            best, worst = passing[0], failing[0]
            pairs.append(
                {
                    "pair_id": content_id("pair", DATA_TYPE, best[0], worst[0]),
                    "data_type": DATA_TYPE,
                    "prompt": prompt,
                    "chosen": best[1],
                    "rejected": worst[1],
                    "chosen_row_id": best[0],
                    "rejected_row_id": None,  # a rejected answer is a reject, never a stored row
                    "judge": "checker",
                    "reason": f"chosen meets all {len(chosen)} constraints; "
                    f"rejected fails {', '.join(worst[2])}",
                    "persona_id": pid,
                    "source_text_id": p["source_text_id"],
                    "model": model,
                }
            )
    common = {"created_at": ts, "partition": partition}
    return VerifiableOutput(
        rows_frame("generations", [{**r, **common} for r in rows]),
        rows_frame("constraint_checks", [{**c, **common} for c in checks]),
        rows_frame("preference_pairs", [{**x, **common} for x in pairs]),
        pl.concat([reject_rows(answers.rejects, stage, partition), reject_rows(rejects, stage, partition)]),
        answers.stats,
    )
