"""What was made, measured before anyone trains on it: diversity, contamination, hub statistics.

**Diversity** reproduces the paper's Figure 10 on our own hub: pairs of personas whose embeddings sit
in similarity bands (0.4, 0.6, 0.8, 0.9 ± 0.01) each get one math problem, zero-shot at temperature
0, and the problems' similarity is reported per band. If personas drive diversity, problems of
dissimilar personas are dissimilar, and the problem similarity rises with the persona similarity.

**Contamination** checks synthesized rows against a benchmark's test items: shared word 13-grams
(the convention of GPT-3 / Llama contamination studies) and embedding near-duplicates. A flagged row
is kept in the lake, marked, and left out of exports by default.

**Hub statistics**: each persona's nearest neighbour similarity and the number of clusters (connected
components of the graph "cosine ≥ threshold"), from the same embeddings — the hub's fixed-size sample
(:mod:`.hub_sample`) in the pipeline, exact while the hub is no larger than the sample.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.data_types import DataType
from personahub_dagster.core.stages.ingest import read_documents
from personahub_dagster.core.stages.parsing import words
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
    ``vectors`` — in the pipeline, the hub's sample with its stored vectors (:mod:`.hub_sample`), so
    nothing is re-embedded and the cost does not grow with the hub. Returns ``diversity_pairs`` rows,
    one per pair whose two personas both got an answer (``problems_valid``: both also passed the data
    type's validator); the synthesis output (its rejects and LLM stats); and the statistics of the
    same vectors (:func:`hub_statistics`); ``embedder`` embeds the problems."""
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


def nearest_similarities(vectors: np.ndarray) -> np.ndarray:
    """Each row's cosine to its nearest other row (exact)."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, ids = index.search(vectors, 2)
    own = ids[:, 0] == np.arange(len(vectors))
    return np.where(own, sims[:, 1], sims[:, 0])


def cluster_count(vectors: np.ndarray, threshold: float = 0.75) -> int:
    """Connected components of the graph whose edges join rows with cosine ≥ ``threshold``."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vectors)
    if n == 0:
        return 0
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    lims, _, ids = index.range_search(np.ascontiguousarray(vectors, dtype=np.float32), threshold)
    rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
    graph = csr_matrix((np.ones(len(ids), np.int8), (rows, ids.astype(np.int64))), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def hub_statistics(vectors: np.ndarray, cluster_threshold: float = 0.75) -> dict[str, float]:
    nn = nearest_similarities(vectors)
    q = np.quantile(nn, [0.1, 0.5, 0.9]) if len(nn) else [float("nan")] * 3
    return {
        "personas": len(vectors),
        "nearest_similarity_p10": float(q[0]),
        "nearest_similarity_median": float(q[1]),
        "nearest_similarity_p90": float(q[2]),
        "clusters": cluster_count(vectors, cluster_threshold),
        "cluster_threshold": cluster_threshold,
    }


# -- contamination -----------------------------------------------------------------------------
def ngrams(text: str, n: int) -> set[str]:
    """Word n-grams of lower-cased text (punctuation ignored); a text shorter than n words has none."""
    w = words(text)
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def load_benchmark(path: str | Path, text_field: str = "text") -> tuple[str, list[str]]:
    """A benchmark test file (JSONL or Parquet with a text column) → (its name, its texts)."""
    docs, skipped = read_documents([path], text_field)
    if not docs:
        reasons = sorted({s.reason for s in skipped})[:3]
        raise ValueError(f"benchmark {path}: no texts in field {text_field!r} ({'; '.join(reasons)})")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).name), [d.text for d in docs]


def check_contamination(
    lake: Lake,
    benchmarks: dict[str, list[str]],
    embedder: Embedder,
    *,
    partitions: Sequence[str] | None = None,
    n: int = 13,
    cosine_threshold: float = 0.9,
) -> pl.DataFrame:
    """Check the generated rows of ``partitions`` (default: all) against every benchmark and store the
    result as each day's ``contamination`` slice (replacing that day's earlier check)."""
    rows = lake.read("generations", partitions=partitions or None).select("row_id", "output", "partition")
    frames = [
        contamination(rows, texts, embedder, name=name, n=n, cosine_threshold=cosine_threshold)
        for name, texts in benchmarks.items()
    ]
    found = pl.concat(frames) if frames else rows_frame("contamination", [])
    for day in sorted(set(partitions or rows["partition"].unique().to_list())):
        day_rows = found.filter(pl.col("partition") == day)
        lake.write("contamination", day_rows, producer="contamination_checks", partition=day)
    return found


def contamination(
    rows: pl.DataFrame,
    benchmark: list[str],
    embedder: Embedder,
    *,
    name: str,
    n: int = 13,
    cosine_threshold: float = 0.9,
) -> pl.DataFrame:
    """One ``contamination`` row per generated row (``row_id``, ``output``, ``partition``): the
    benchmark item it shares the most word ``n``-grams with, its nearest benchmark item by embedding,
    and whether either test flags it (any shared n-gram; cosine ≥ ``cosine_threshold``)."""
    index: dict[str, list[int]] = {}
    for k, text in enumerate(benchmark):
        for g in ngrams(text, n):
            index.setdefault(g, []).append(k)
    outputs = rows["output"].to_list()
    nearest_sim, nearest_item = np.full(len(outputs), np.nan), np.full(len(outputs), -1)
    if benchmark and outputs:
        bench_vecs = embedder.encode(benchmark)
        flat = faiss.IndexFlatIP(bench_vecs.shape[1])
        flat.add(bench_vecs)
        sims, ids = flat.search(embedder.encode(outputs), 1)
        nearest_sim, nearest_item = sims[:, 0], ids[:, 0]
    ts = now_utc()
    out = []
    for i, (row_id, text, partition) in enumerate(
        zip(rows["row_id"], outputs, rows["partition"], strict=True)
    ):
        hits = Counter(k for g in ngrams(text, n) for k in index.get(g, ()))
        item, shared = hits.most_common(1)[0] if hits else (int(nearest_item[i]), 0)
        by_embedding = bool(nearest_sim[i] >= cosine_threshold)
        reasons = ([f"{n}-gram"] if shared else []) + (["embedding"] if by_embedding else [])
        out.append(
            {
                "row_id": row_id,
                "benchmark": name,
                "flagged": bool(reasons),
                "reason": "+".join(reasons) or None,
                "ngram_hits": shared,
                "similarity": float(nearest_sim[i]) if not np.isnan(nearest_sim[i]) else None,
                "benchmark_item": int(item) if item >= 0 else None,
                "benchmark_text": benchmark[item][:2000] if item >= 0 else None,
                "created_at": ts,
                "partition": partition,
            }
        )
    return rows_frame("contamination", out)
