"""Contamination: synthesized rows checked against a benchmark's test items — shared word 13-grams
(the convention of GPT-3 / Llama contamination studies) and embedding near-duplicates. A flagged row is
kept in the lake, marked, and left out of exports by default."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.ingest import read_documents
from personahub_dagster.core.stages.parsing import words


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
