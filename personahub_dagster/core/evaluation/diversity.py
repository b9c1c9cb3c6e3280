"""Diversity, as the paper measures it (its Figure 10, on our own hub): pairs of personas whose
embeddings sit in similarity bands (0.4, 0.6, 0.8, 0.9 ± 0.01) each get one math problem, zero-shot at
temperature 0, and the problems' similarity is reported per band. If personas drive diversity, problems
of dissimilar personas are dissimilar, and the problem similarity rises with the persona similarity.

Contamination (:mod:`.contamination`) and hub statistics (:mod:`.hub_stats`) sit beside it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.evaluation.hub_stats import hub_statistics
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.data_types import DataType
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Parsed, Progress, StageOutput, run_stage
from personahub_dagster.core.stages.synthesis import synthesis_stage

BANDS = (0.4, 0.6, 0.8, 0.9)


@dataclass(frozen=True)
class Pair:
    band: float
    a: int
    b: int
    similarity: float


def pairs_in_bands(
    vectors: np.ndarray,
    bands: Sequence[float] = BANDS,
    tolerance: float = 0.01,
    per_band: int = 20,
    seed: int = 0,
    neighbours: int = 50,
    random_pairs: int = 200_000,
) -> list[Pair]:
    """Up to ``per_band`` pairs of rows whose cosine lies within ``band ± tolerance``, per band.

    Low bands are common among random pairs; high ones are rare there but common among nearest
    neighbours, so candidates are both (FAISS top-``neighbours`` per row, plus random pairs). Identical
    texts (cosine ≈ 1) never qualify. The sample is seeded, so a re-run picks the same pairs."""
    n = len(vectors)
    if n < 2:
        return []
    candidates: dict[tuple[int, int], float] = {}
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, ids = index.search(vectors, min(neighbours + 1, n))
    for i in range(n):
        for s, j in zip(sims[i], ids[i], strict=True):
            if j > i:
                candidates[(i, int(j))] = float(s)
            elif 0 <= j < i:
                candidates[(int(j), i)] = float(s)
    rng = np.random.default_rng(seed)
    m = min(random_pairs, n * (n - 1) // 2)
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    for start in range(0, len(a), 16_384):  # in slices: two gathered copies of 200k vectors are 600 MB
        i, j = a[start : start + 16_384], b[start : start + 16_384]
        for x, y, s in zip(i, j, np.einsum("ij,ij->i", vectors[i], vectors[j]), strict=True):
            candidates.setdefault((int(x), int(y)), float(s))

    pick = random.Random(seed)
    out: list[Pair] = []
    for band in bands:
        inside = sorted((ij, s) for ij, s in candidates.items() if abs(s - band) <= tolerance)
        for (i, j), s in pick.sample(inside, min(per_band, len(inside))):
            out.append(Pair(band, i, j, s))
    return out


def diversity(
    personas: pl.DataFrame,
    vectors: np.ndarray,
    embedder: Embedder,
    gateway: LLMGateway,
    data_type: DataType,
    template: PromptTemplate,
    *,
    bands: Sequence[float] = BANDS,
    tolerance: float = 0.01,
    per_band: int = 20,
    seed: int = 0,
    partition: str,
    stage: str = "diversity",
    progress: Progress | None = None,
) -> tuple[pl.DataFrame, StageOutput, dict[str, float]]:
    """Figure 10 on ``personas`` (persona_id, persona, source_text_id) with their embeddings
    ``vectors`` — in the pipeline, the hub's sample with its stored vectors
    (:mod:`~personahub_dagster.core.hub.sample`), so nothing is re-embedded and the cost does not grow with
    the hub. Returns ``diversity_pairs`` rows, one per pair whose two personas both got an answer
    (``problems_valid``: both also passed the data type's validator); the synthesis output (its rejects and
    LLM stats); and the statistics of the same vectors (:func:`hub_statistics`); ``embedder`` embeds the
    problems."""
    pairs = pairs_in_bands(vectors, bands, tolerance, per_band, seed)
    used = sorted({p.a for p in pairs} | {p.b for p in pairs})
    requests, parse_problem = synthesis_stage(
        personas[used],
        gateway,
        data_type,
        template,
        modes=["zero_shot"],
        partition=partition,
        params={"temperature": 0.0},
    )
    # The problem each persona got: the accepted one, else the model's raw answer (a weak model's
    # answers often fail the dataset's validator, but they are still what the persona produced).
    problem: dict[str, str] = {}
    valid: set[str] = set()

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        row, reason = parse_problem(request, res)
        persona_id = request.context[1]["persona_id"]
        if row is not None:
            problem[persona_id] = row["output"]
            valid.add(persona_id)
        elif res.content and res.content.strip():
            problem[persona_id] = res.content
        return row, reason

    answers = run_stage(gateway, requests, parse, stage=stage, progress=progress)
    out = answers.output("generations", stage, partition)
    ids = personas["persona_id"].to_list()
    made = [p for p in pairs if ids[p.a] in problem and ids[p.b] in problem]
    texts = sorted({problem[ids[i]] for p in made for i in (p.a, p.b)})
    vec = dict(zip(texts, embedder.encode(texts), strict=True)) if texts else {}
    ts = now_utc()
    rows = [
        {
            "band": p.band,
            "persona_a": ids[p.a],
            "persona_b": ids[p.b],
            "persona_similarity": p.similarity,
            "problem_a": problem[ids[p.a]],
            "problem_b": problem[ids[p.b]],
            "problem_similarity": float(vec[problem[ids[p.a]]] @ vec[problem[ids[p.b]]]),
            "problems_valid": ids[p.a] in valid and ids[p.b] in valid,
            "model": gateway.config.model,
            "created_at": ts,
            "partition": partition,
        }
        for p in made
    ]
    return rows_frame("diversity_pairs", rows), out, hub_statistics(vectors)


def band_summary(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per band: pairs, mean persona similarity, and the problems' similarity (mean and quartiles)."""
    return (
        pairs.group_by("band")
        .agg(
            pl.len().alias("pairs"),
            pl.col("persona_similarity").mean().alias("persona_similarity"),
            pl.col("problem_similarity").mean().alias("mean"),
            pl.col("problem_similarity").quantile(0.25).alias("q1"),
            pl.col("problem_similarity").median().alias("median"),
            pl.col("problem_similarity").quantile(0.75).alias("q3"),
        )
        .sort("band")
    )
