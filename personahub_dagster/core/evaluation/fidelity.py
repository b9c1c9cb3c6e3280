"""Persona fidelity: did the persona shape what was generated for it?

On a seeded sample of a day's generated rows, per data type and prompting mode:

* **retrieval** — the row's output embedding picks its own persona out of ``k`` candidates (its own
  and ``k - 1`` drawn from the hub sample): top-1 accuracy beside the chance rate ``1/k``. Outputs that
  ignore their persona score near chance.
* **lift** — the same prompt asked again with the persona replaced by a neutral one (``no persona``)
  and by the hub sample's persona most distant from it: ``persona_lift`` is how much closer (cosine)
  the real output is to its persona than the neutral output is; ``distant_gap`` the same against
  the distant persona's output. Both 0 when the persona changes nothing. With a ``judge`` template, a
  model also scores each output's adherence to its persona from 1 to 5, beside the neutral output's.
* **diversity** — distinct-1/distinct-2 of the outputs' words and the Vendi score of their
  embeddings (the effective number of distinct outputs, Friedman & Dieng 2023), beside the paper's
  similarity bands (``diversity_bands``).

Everything is read from the day's rows and the hub sample (a fixed size), so the step costs the same
whatever the hub's age; the lift's calls go through the gateway and its cache like any stage's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.parsing import words
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Answers, Parsed, StageOutput, reject_rows, run_stage

NEUTRAL_PERSONA = "A person."
_SCORE = re.compile(r"\b([1-5])\b")


@dataclass(frozen=True)
class FidelityConfig:
    sample_rows: int = 200  # generated rows measured (retrieval, diversity)
    candidates: int = 10  # k: the persona and k - 1 others
    lift_rows: int = 20  # rows per data type asked again without and with a distant persona
    seed: int = 0


def seeded_sample(rows: pl.DataFrame, n: int, seed: int, key: str = "row_id") -> pl.DataFrame:
    """``n`` rows chosen by a hash of seed and id: the same rows whatever the order they come in."""
    if rows.is_empty():
        return rows
    order = rows.with_columns(_k=pl.col(key).map_elements(lambda i: digest("fidelity", seed, i), pl.Utf8))
    return order.sort("_k").head(n).drop("_k")


def retrieval_hits(
    outputs: np.ndarray,
    own: np.ndarray,
    own_ids: list[str],
    pool: np.ndarray,
    pool_ids: list[str],
    k: int,
    seed: int,
) -> np.ndarray:
    """Per row, whether its output is closer to its own persona than to ``k - 1`` other personas drawn
    (seeded, per row) from ``pool`` — never the persona itself; ties count against it."""
    rng = np.random.default_rng(seed)
    pool_ids_arr = np.asarray(pool_ids)
    hits = np.zeros(len(outputs), bool)
    for i in range(len(outputs)):
        others = np.flatnonzero(pool_ids_arr != own_ids[i])
        drawn = pool[rng.choice(others, min(k - 1, len(others)), replace=False)]
        hits[i] = len(drawn) == 0 or float(outputs[i] @ own[i]) > float((drawn @ outputs[i]).max())
    return hits


def vendi_score(vectors: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine similarity matrix: 1 for n copies of one
    output, n for n orthogonal ones."""
    n = len(vectors)
    if n == 0:
        return 0.0
    eig = np.linalg.eigvalsh((vectors @ vectors.T) / n).clip(min=0)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of the texts (Li et al. 2016)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _metric(data_type: str, mode: str, metric: str, value: float, baseline: float | None, rows: int) -> dict:
    return {
        "data_type": data_type,
        "prompting_mode": mode,
        "metric": metric,
        "value": float(value),
        "baseline": None if baseline is None else float(baseline),
        "rows": rows,
    }


def measure(
    rows: pl.DataFrame,
    sample: pl.DataFrame,
    sample_vectors: np.ndarray,
    embedder: Embedder,
    config: FidelityConfig,
) -> tuple[list[dict], pl.DataFrame]:
    """Retrieval and diversity per (data type, mode) of ``rows`` (generations joined with their
    ``persona`` text); the rows measured, with their embeddings' cosines to their persona."""
    chosen = seeded_sample(rows, config.sample_rows, config.seed)
    if chosen.is_empty():
        return [], chosen
    out_vecs = embedder.encode(chosen["output"].to_list())
    own = embedder.encode(chosen["persona"].to_list())
    hits = retrieval_hits(
        out_vecs,
        own,
        chosen["persona_id"].to_list(),
        sample_vectors,
        sample["persona_id"].to_list(),
        config.candidates,
        config.seed,
    )
    chance = 1 / min(config.candidates, sample.height + 1)
    chosen = chosen.with_columns(
        hit=pl.Series(hits), persona_cosine=pl.Series((out_vecs * own).sum(axis=1).astype(np.float64))
    )
    metrics = []
    for (dt, mode), group in chosen.with_row_index("_i").group_by(
        "data_type", "prompting_mode", maintain_order=True
    ):
        idx = group["_i"].to_numpy()
        metrics += [
            _metric(dt, mode, "retrieval_top1", float(hits[idx].mean()), chance, len(idx)),
            _metric(dt, mode, "distinct_1", distinct_n(group["output"].to_list(), 1), None, len(idx)),
            _metric(dt, mode, "distinct_2", distinct_n(group["output"].to_list(), 2), None, len(idx)),
            _metric(dt, mode, "vendi", vendi_score(out_vecs[idx]), None, len(idx)),
        ]
    return metrics, chosen


def lift(
    measured: pl.DataFrame,
    sample: pl.DataFrame,
    sample_vectors: np.ndarray,
    embedder: Embedder,
    gateway: LLMGateway,
    templates: dict[str, PromptTemplate],
    config: FidelityConfig,
    judge: PromptTemplate | None = None,
    stage: str = "persona_fidelity",
    answered: Answers | None = None,
) -> list[dict]:
    """The lift metrics per (data type, mode) for up to ``lift_rows`` measured rows of each type: the
    stored prompt asked again with the persona swapped for :data:`NEUTRAL_PERSONA` and for the hub
    sample's persona farthest from it. The calls' rejects and statistics go into ``answered``."""
    answered = answered if answered is not None else Answers()
    picked = (
        pl.concat([g.head(config.lift_rows) for _, g in measured.group_by("data_type", maintain_order=True)])
        if measured.height
        else measured
    )
    picked = picked.filter(  # the registry's types, whose prompts can be asked again with another persona
        pl.col("prompt").str.contains(pl.col("persona"), literal=True)
        & pl.col("data_type").is_in(list(templates))
    )
    if picked.is_empty():
        return []
    own = embedder.encode(picked["persona"].to_list())
    distant = sample["persona"].to_numpy()[np.argmin(own @ sample_vectors.T, axis=1)]
    answers: dict[tuple[int, str], str] = {}

    def requests() -> Iterator[LLMRequest]:
        for i, row in enumerate(picked.iter_rows(named=True)):
            template = templates[row["data_type"]]
            variables = json.loads(row["constraints"] or "{}")
            for variant, persona in (("none", NEUTRAL_PERSONA), ("distant", str(distant[i]))):
                messages = template.system_message(persona=persona, **variables)
                messages.append({"role": "user", "content": row["prompt"].replace(row["persona"], persona)})
                yield LLMRequest(
                    f"{row['row_id']}|{variant}", messages, dict(template.params), context=(i, variant)
                )

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        if not (res.content or "").strip():
            return None, "empty"
        answers[request.context] = res.content
        return {}, None

    answered.merge(run_stage(gateway, requests(), parse, stage=stage))
    scores = _judge(picked, answers, gateway, judge, stage, answered) if judge is not None else {}
    metrics = []
    for (dt, mode), group in picked.with_row_index("_i").group_by(
        "data_type", "prompting_mode", maintain_order=True
    ):
        idx = [i for i in group["_i"].to_list() if (i, "none") in answers and (i, "distant") in answers]
        if not idx:
            continue
        mine = embedder.encode([picked["output"][i] for i in idx])
        none = embedder.encode([answers[(i, "none")] for i in idx])
        far = embedder.encode([answers[(i, "distant")] for i in idx])
        p = own[idx]
        metrics += [
            _metric(dt, mode, "persona_lift", float(((mine - none) * p).sum(axis=1).mean()), 0.0, len(idx)),
            _metric(dt, mode, "distant_gap", float(((mine - far) * p).sum(axis=1).mean()), 0.0, len(idx)),
        ]
        judged = [scores[(i, "own")] for i in idx if (i, "own") in scores and (i, "none") in scores]
        if judged:
            base = [scores[(i, "none")] for i in idx if (i, "own") in scores and (i, "none") in scores]
            metrics.append(_metric(dt, mode, "judge_adherence", np.mean(judged), np.mean(base), len(judged)))
    return metrics


def _judge(
    picked: pl.DataFrame,
    answers: dict,
    gateway: LLMGateway,
    judge: PromptTemplate,
    stage: str,
    answered: Answers,
) -> dict[tuple[int, str], int]:
    """A 1–5 adherence score of each row's output and of its neutral output, to the row's persona."""
    scores: dict[tuple[int, str], int] = {}

    def requests() -> Iterator[LLMRequest]:
        for i, row in enumerate(picked.iter_rows(named=True)):
            for which, text in (("own", row["output"]), ("none", answers.get((i, "none")))):
                if text:
                    messages = judge.render(persona=row["persona"], text=text)
                    yield LLMRequest(
                        f"{row['row_id']}|judge-{which}", messages, dict(judge.params), context=(i, which)
                    )

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        found = _SCORE.search(res.content or "")
        if found is None:
            return None, "no_score"
        scores[request.context] = int(found.group(1))
        return {}, None

    answered.merge(run_stage(gateway, requests(), parse, stage=f"{stage}.judge"))
    return scores


def fidelity_rows(metrics: list[dict], partition: str) -> pl.DataFrame:
    ts = now_utc()
    return rows_frame("persona_fidelity", [{**m, "created_at": ts, "partition": partition} for m in metrics])


def day_fidelity(
    generations: pl.DataFrame,
    hub: pl.DataFrame,
    sample: pl.DataFrame,
    sample_vectors: np.ndarray,
    embedder: Embedder,
    gateway: LLMGateway,
    templates: dict[str, PromptTemplate],
    config: FidelityConfig,
    partition: str,
    judge: PromptTemplate | None = None,
) -> tuple[StageOutput, int]:
    """The ``persona_fidelity`` rows of a day's ``generations`` whose personas are in ``hub`` (the
    hub rows of the days they were drawn from), with the lift's rejects and call statistics, and how
    many rows could not be measured for want of their persona there."""
    rows = generations.join(
        hub.select("persona_id", "persona").unique("persona_id"), on="persona_id", how="inner"
    )
    unmatched = generations.height - rows.height
    metrics, measured = measure(rows, sample, sample_vectors, embedder, config)
    answered = Answers()
    if config.lift_rows and measured.height:
        metrics += lift(
            measured, sample, sample_vectors, embedder, gateway, templates, config, judge, answered=answered
        )
    out = StageOutput(
        fidelity_rows(metrics, partition),
        reject_rows(answered.rejects, "persona_fidelity", partition),
        answered.stats,
    )
    return out, unmatched
