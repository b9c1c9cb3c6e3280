"""The paper's agreement filter for math problems: solve each problem with independent solvers and
keep it for a test set only when at least ``min_agree`` final answers are equivalent.

Solvers differ by model, by prompting style (``math_solution`` template styles), or both. Answers are
extracted and compared with ``math-verify`` (\\boxed{…}, fractions, decimals and LaTeX are equivalent
when they denote the same value), so "0.75", "3/4" and "\\frac{3}{4}" agree.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from math_verify import parse, verify

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import (
    Answers,
    Parsed,
    Progress,
    StageOutput,
    reject_rows,
    run_stage,
)

_FINAL = re.compile(r"final answer\s*[:：]\s*(.+)", re.IGNORECASE)


@dataclass(frozen=True)
class Solver:
    """One independent way of solving: a gateway (its model) and a prompting style."""

    name: str
    style: str
    gateway: LLMGateway


def _timeouts() -> dict[str, int | None]:
    # math-verify bounds parsing time with SIGALRM, which only the main thread may use
    seconds = 5 if threading.current_thread() is threading.main_thread() else None
    return {"parsing_timeout": seconds}


def extract_answer(solution: str | None) -> list | None:
    """The parsed final answer of a solution (math-verify's [value, text]), or None if it has none.
    The text after the last "Final answer:" is preferred; otherwise the last \\boxed{} or number."""
    if not solution:
        return None
    finals = _FINAL.findall(solution)
    parsed = parse(finals[-1], **_timeouts()) if finals else []
    if not parsed:
        parsed = parse(solution, **_timeouts())
    return parsed or None


def agreeing(answers: Sequence[list | None]) -> tuple[int, int | None]:
    """Size of the largest group of equivalent answers and the index of one member (None if no answer)."""
    best, best_i = 0, None
    timeout = _timeouts()["parsing_timeout"]
    for i, a in enumerate(answers):
        if a is None:
            continue
        n = sum(1 for b in answers if b is not None and verify(a, b, timeout_seconds=timeout))
        if n > best:
            best, best_i = n, i
    return best, best_i


def check_problems(
    problems: pl.DataFrame,
    solvers: Sequence[Solver],
    template: PromptTemplate,
    *,
    min_agree: int = 2,
    partition: str,
    stage: str,
    progress: Progress | None = None,
) -> StageOutput:
    """One ``math_checks`` row per problem: every solver's answer and whether ``min_agree`` agree.

    A solver whose call failed or whose solution has no extractable answer counts as disagreeing and
    leaves a ``rejects`` row with the reason; the problem itself is never dropped here."""
    styles = template.extras.get("styles", {})
    if unknown := sorted({s.style for s in solvers} - set(styles)):
        raise ValueError(f"unknown solution styles {unknown}; the template defines {sorted(styles)}")
    if len({s.name for s in solvers}) != len(solvers):
        raise ValueError("solver names must be unique")
    answers = Answers()

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        solver, row_id = request.context
        parsed = extract_answer(res.content) if res.ok else None
        solution = {
            "_row_id": row_id,
            "solver": solver.name,
            "model": solver.gateway.config.model,
            "style": solver.style,
            "answer": str(parsed[-1]) if parsed else None,
            "solution": res.content,
            "request_hash": res.request_hash,
            "_parsed": parsed,
        }
        return solution, "no_final_answer" if res.ok and parsed is None else None

    for solver in solvers:
        requests = (
            LLMRequest(
                f"{solver.name}|{p['row_id']}",
                template.render(problem=p["output"], style=solver.style, styles=styles),
                dict(template.params),
                context=(solver, p["row_id"]),
            )
            for p in problems.select("row_id", "output").iter_rows(named=True)
        )
        answers.merge(
            run_stage(
                solver.gateway,
                requests,
                parse,
                stage=f"{stage}.{solver.name}",
                progress=progress,
                parse_failures=True,  # a failed solver is a solution without an answer
            )
        )
    by_problem: dict[str, list[dict]] = {rid: [] for rid in problems["row_id"]}
    for solution in answers.rows:  # solver by solver, so each problem's solutions are in solver order
        by_problem[solution["_row_id"]].append(solution)
    rows, ts = [], now_utc()
    for p in problems.select("row_id", "persona_id", "source_text_id").iter_rows(named=True):
        sols = by_problem[p["row_id"]]
        n, idx = agreeing([s["_parsed"] for s in sols])
        rows.append(
            {
                **p,
                "n_solutions": sum(s["answer"] is not None for s in sols),
                "agreeing": n,
                "agreement": n >= min_agree,
                "answer": sols[idx]["answer"] if idx is not None and n >= min_agree else None,
                "solutions": json.dumps([{k: v for k, v in s.items() if k[0] != "_"} for s in sols]),
                "created_at": ts,
                "partition": partition,
            }
        )
    return StageOutput(
        rows_frame("math_checks", rows), reject_rows(answers.rejects, stage, partition), answers.stats
    )
