"""Preference pairs for data no code can check: the same request answered a second way (another
temperature, or another model), and a judge model choosing the better answer by a rubric, its reason
kept. (Verifiable instructions make their pairs by the checker instead: :mod:`.verifiable`.)

The second answer re-asks the row's stored prompt, with the data type's system turn, so the two answers
differ only in how they were sampled. The answers are shown to the judge in an order drawn per pair by
a seeded hash — a judge's taste for the first position cannot pick the winner — and an answer the judge
gives no verdict for (neither ``Better: A`` nor ``Better: B``) is a ``rejects`` row, as is a second
answer that is empty or cut off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.config.ids import content_id, digest
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Answers, Parsed, Progress, reject_rows, run_stage

_VERDICT = re.compile(r"better\W*\s*(?:answer\s*)?\b([AB])\b", re.IGNORECASE)
_REASON = re.compile(r"reason\s*:\s*(.+)", re.IGNORECASE)


@dataclass
class PairsOutput:
    pairs: pl.DataFrame
    rejects: pl.DataFrame
    stats: GatewayStats


def verdict(raw: str | None) -> tuple[str | None, str | None]:
    """``("A" | "B", reason)`` from a judge's answer, or ``(None, None)`` when it names no winner."""
    found = _VERDICT.search(raw or "")
    if found is None:
        return None, None
    reason = _REASON.search(raw or "")
    return found.group(1).upper(), (reason.group(1).strip() if reason else "")


def judged_pairs(
    rows: pl.DataFrame,
    second: LLMGateway,
    judge: LLMGateway,
    templates: dict[str, PromptTemplate],
    judge_template: PromptTemplate,
    *,
    partition: str,
    temperature: float | None = 1.0,
    seed: int | str = 0,
    stage: str = "preference_pairs",
    progress: Progress | None = None,
) -> PairsOutput:
    """A judged pair for each of ``rows`` (generations joined with their ``persona``; the registry's
    types, whose ``templates`` give the system turn): the row's own answer against ``second``'s
    answer to the same prompt (at ``temperature``, or the second gateway's own when None)."""
    rows = rows.filter(pl.col("data_type").is_in(list(templates)))
    answers = Answers()
    seconds: dict[str, tuple[str, str]] = {}
    people = rows.to_dicts()

    def second_requests() -> Iterator[LLMRequest]:
        for i, r in enumerate(people):
            template = templates[r["data_type"]]
            messages = template.system_message(persona=r["persona"], **json.loads(r["constraints"] or "{}"))
            messages.append({"role": "user", "content": r["prompt"]})
            params = {**template.params, **({"temperature": temperature} if temperature is not None else {})}
            yield LLMRequest(f"second|{r['row_id']}", messages, params, context=i)

    def parse_second(request: LLMRequest, res: LLMResult) -> Parsed:
        text = (res.content or "").strip()
        if res.finish_reason == "length":
            return None, "truncated"
        if not text:
            return None, "empty"
        r = people[request.context]
        if text == r["output"].strip():
            return None, "same_answer"
        seconds[r["row_id"]] = (text, res.request_hash)
        return {}, None

    answers.merge(
        run_stage(second, second_requests(), parse_second, stage=f"{stage}.second", progress=progress)
    )
    verdicts: dict[str, tuple[bool, str]] = {}  # row id → (the row's own answer won, reason)

    def judge_requests() -> Iterator[LLMRequest]:
        for r in people:
            if r["row_id"] not in seconds:
                continue
            own_first = int(digest("order", seed, r["row_id"])[:2], 16) % 2 == 0
            first, second_text = (r["output"], seconds[r["row_id"]][0])[:: 1 if own_first else -1]
            messages = judge_template.render(
                persona=r["persona"], prompt=r["prompt"], first=first, second=second_text
            )
            yield LLMRequest(
                f"judge|{r['row_id']}",
                messages,
                dict(judge_template.params),
                context=(r["row_id"], own_first),
            )

    def parse_judge(request: LLMRequest, res: LLMResult) -> Parsed:
        winner, reason = verdict(res.content)
        if winner is None:
            return None, "no_verdict"
        row_id, own_first = request.context
        verdicts[row_id] = ((winner == "A") == own_first, reason or "")
        return {}, None

    answers.merge(run_stage(judge, judge_requests(), parse_judge, stage=f"{stage}.judge"))
    pairs = []
    for r in people:
        if r["row_id"] not in verdicts:
            continue
        own_won, reason = verdicts[r["row_id"]]
        other, other_hash = seconds[r["row_id"]]
        chosen, rejected = (r["output"], other) if own_won else (other, r["output"])
        pairs.append(
            {
                "pair_id": content_id("pair", r["row_id"], other_hash),
                "data_type": r["data_type"],
                "prompt": r["prompt"],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_row_id": r["row_id"] if own_won else None,
                "rejected_row_id": None if own_won else r["row_id"],
                "judge": judge.config.model,
                "reason": reason,
                "persona_id": r["persona_id"],
                "source_text_id": r["source_text_id"],
                "model": second.config.model,
            }
        )
    common = {"created_at": now_utc(), "partition": partition}
    return PairsOutput(
        rows_frame("preference_pairs", [{**p, **common} for p in pairs]),
        reject_rows(answers.rejects, stage, partition),
        answers.stats,
    )
