"""Hub statistics: each persona's nearest-neighbour similarity and the number of clusters (connected
components of the graph "cosine >= threshold", by scipy), from the hub's fixed-size sample of stored
vectors (:mod:`~personahub_dagster.core.hub.sample`) — exact while the hub is no larger than the sample."""

from __future__ import annotations

import faiss
import numpy as np


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
