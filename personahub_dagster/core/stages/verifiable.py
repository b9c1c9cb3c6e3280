"""Verifiable instruction following (Tülu 3's persona IF set): a persona's request with one to three
checkable constraints, two answers at two temperatures, each constraint checked by code.

Three things come out, all traceable to the persona and its text:

* ``constraint_checks`` — every answer's verdict on every constraint (passed, and what was found);
* ``generations`` rows (``data_type`` ``verifiable_instruction``) — answers that meet all their
  constraints; an answer that misses one is a ``rejects`` row naming the constraints it failed;
* ``preference_pairs`` — when the two answers differ in constraints met, the better one is ``chosen``
  and the other ``rejected``, the reason saying which constraints decided it (the judge is the checker).

The request itself comes from the ``instruction`` template (Persona Hub's instruction type); the
constraints are drawn per persona by a seeded hash (:mod:`.constraints`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.config.ids import content_id, digest
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.stages.constraints import Constraint, check_all, draw
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
            chosen = draw(p["persona_id"], seed, n, list(kinds) if kinds else None)
            prompt = tasks[p["persona_id"]] + "\n\n" + " ".join(c.describe() for c in chosen)
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
            failed = sorted(c.kind for c, ok, _ in verdicts if not ok)
            judged.append((row_id, text, request_hash, failed, len(verdicts) - len(failed)))
            checks += [
                {
                    "row_id": row_id,
                    "persona_id": pid,
                    "constraint": c.kind,
                    "params": json.dumps(c.params, sort_keys=True),
                    "passed": ok,
                    "detail": detail[:300],
                }
                for c, ok, detail in verdicts
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
        if len(judged) == 2 and judged[0][4] != judged[1][4]:
            best, worst = sorted(judged, key=lambda j: -j[4])
            pairs.append(
                {
                    "pair_id": content_id("pair", DATA_TYPE, best[0], worst[0]),
                    "data_type": DATA_TYPE,
                    "prompt": prompt,
                    "chosen": best[1],
                    "rejected": worst[1],
                    "chosen_row_id": best[0],
                    "rejected_row_id": worst[0],
                    "judge": "checker",
                    "reason": f"chosen meets {best[4]} of {len(chosen)} constraints, rejected {worst[4]}; "
                    f"rejected fails {', '.join(worst[3])}",
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
