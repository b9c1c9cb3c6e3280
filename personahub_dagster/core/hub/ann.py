"""Approximate nearest-neighbour search for the hub's embedding stage: an IVF index of 4-bit product-
quantized codes proposes candidates and the stored float vectors re-rank them exactly; the lists probed
per query are calibrated on near-duplicates planted among the hub's own vectors."""

from __future__ import annotations

import faiss
import numpy as np

from personahub_dagster.core.hub.chunks import gather_rows
from personahub_dagster.core.hub.config import DedupConfig

ANN_FLOOR = 1_000  # the 4-bit codes need this many vectors to train; below it search is always exact


RERANK = 8  # candidates the approximate index proposes per query, re-ranked exactly


def ann_top1(
    index: faiss.Index, blocks: list[np.ndarray], vecs: np.ndarray, nprobe: int
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-1: the index proposes ``RERANK`` candidates from its 4-bit codes, and their
    exact cosines (from the stored float vectors, ``blocks`` in index order) pick the nearest — so
    similarities are exact."""
    index.nprobe = nprobe
    _, cand = index.search(np.ascontiguousarray(vecs, dtype=np.float32), RERANK)
    unique, inverse = np.unique(cand[cand >= 0], return_inverse=True)
    exact = np.full(cand.shape, -np.inf, np.float32)
    if len(unique):
        rows = gather_rows(blocks, unique)[inverse]  # one row per valid candidate
        q = np.repeat(np.arange(len(vecs)), (cand >= 0).sum(axis=1))
        exact[cand >= 0] = np.einsum("ij,ij->i", rows, vecs[q])
    best = exact.argmax(axis=1)
    idx = cand[np.arange(len(vecs)), best]
    return np.where(idx >= 0, exact[np.arange(len(vecs)), best], -1.0).astype(np.float32), idx


def build_ann(vecs: np.ndarray, seed: int) -> faiss.Index:
    """IVF with 4-bit product-quantized codes scanned with SIMD ("fast scan"): ~1/40 the size of the
    float vectors, so it loads, saves and scans in a fraction of the time; appendable without
    retraining; ~4·√n lists, trained on (a sample of) the vectors it starts with. The codes only
    propose candidates — :func:`ann_top1` re-ranks them exactly."""
    n, dim = vecs.shape
    nlist = int(min(65536, 4 * np.sqrt(n), max(1, n // 39)))
    subquantizers = max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)  # 8 dims each
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, subquantizers, 4, faiss.METRIC_INNER_PRODUCT)
    sample = vecs[np.sort(np.random.default_rng(seed).permutation(n)[: nlist * 50])]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.add(vecs)
    return index


def calibrate_nprobe(index: faiss.Index, blocks: list[np.ndarray], config: DedupConfig) -> int:
    """The fewest lists per query (1, 2, 4, …) with which ``index`` finds ≥ ``ann_target_recall`` of
    planted near-duplicates of its own vectors (``blocks``, in index order).

    Recall of an IVF index depends on how the data clusters, so it is measured on the hub itself:
    up to 1,000 kept vectors are each moved in a random direction to a cosine between the dedup
    threshold and halfway to 1 — a near-duplicate the embedding stage must catch — and a query
    counts as found when the search returns that vector or one at least as close. Random
    directions spread the change over every dimension, which is harder for IVF than real rewordings.
    """
    c = config
    if c.ann_nprobe:
        return c.ann_nprobe
    rng = np.random.default_rng(c.seed)
    n = sum(len(b) for b in blocks)
    pick = np.sort(rng.choice(n, size=min(1000, n), replace=False))
    base = np.asarray(gather_rows(blocks, pick), dtype=np.float32)
    cos = rng.uniform(c.cosine_threshold, (1 + c.cosine_threshold) / 2, (len(pick), 1))
    queries = planted_near_duplicates(base, cos, rng)
    planted = (queries * base).sum(axis=1)
    nprobe = 1
    while nprobe < index.nlist:
        sim, idx = ann_top1(index, blocks, queries, nprobe)
        if ((idx == pick) | (sim >= planted - 1e-6)).mean() >= c.ann_target_recall:
            break
        nprobe = min(2 * nprobe, index.nlist)
    return nprobe


def planted_near_duplicates(base: np.ndarray, cos, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at cosine ``cos`` (a number or one per row) to the unit rows of ``base``, each
    moved in a random direction: near-duplicates with a known answer, for measuring approximate search."""
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = np.asarray(cos, dtype=np.float32)
    return np.ascontiguousarray(cos * base + np.sqrt(1 - cos**2) * noise, dtype=np.float32)
