"""Topic clusters of the hub: k-means centroids trained once on the hub sample, every day's personas
assigned to the nearest one from their stored embeddings.

Training reads only the hub sample (:mod:`.sample`, a fixed-size uniform sample with its vectors), so
it costs the same on night 1 and night 1000; assigning reads the day's vectors from the hub's state
(:func:`.chunks.kept_vectors`), so a night costs O(day). Centroids are fixed until someone asks for a
new clustering (a day assigned under an older one keeps its ids, and says which clustering they are
of); the labels of a clustering are written once with it.

The clusterings live in the lake's files beside the hub state: ``clusters/<version>/centroids.npy`` and
``clusters.json``, with ``clusters/CURRENT`` naming the live one, swapped by compare-and-swap so two
runs that both train a first clustering agree on one.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.hub.chunks import kept_vectors
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.storage.store import ConcurrentUpdate, Store

UNCLUSTERED = -1


@dataclass
class Clustering:
    """One clustering of the hub: its centroids (unit vectors) and a short label for each."""

    version: str
    centroids: np.ndarray
    labels: list[str] = field(default_factory=list)
    trained_on: int = 0  # hub sample personas it was trained on
    embedder: str = ""

    @property
    def k(self) -> int:
        return len(self.centroids)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nearest centroid of each vector (by cosine) and that cosine."""
        if len(vectors) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        index = faiss.IndexFlatIP(self.centroids.shape[1])
        index.add(self.centroids)
        sims, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return ids[:, 0].astype(np.int64), sims[:, 0]

    def label(self, cluster: int) -> str | None:
        return self.labels[cluster] if 0 <= cluster < len(self.labels) else None


def train(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Spherical k-means centroids of ``vectors`` (unit rows): ``k`` of them, or fewer when there are
    too few vectors for ``k`` (at least 5 per centroid, so that no cluster is a single persona)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(vectors) // 5))
    km = faiss.Kmeans(vectors.shape[1], k, niter=iterations, seed=seed, spherical=True, verbose=False)
    km.cp.min_points_per_centroid = 1
    km.cp.max_points_per_centroid = max(256, len(vectors) // k + 1)  # train on the whole sample
    km.train(vectors)
    return km.centroids.copy()


def representatives(
    sample: pl.DataFrame, vectors: np.ndarray, centroids: np.ndarray, n: int = 8
) -> list[list[str]]:
    """For each centroid, the ``n`` sample personas closest to it: what its label is asked from."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, nearest = index.search(np.ascontiguousarray(centroids, dtype=np.float32), min(n, len(vectors)))
    texts = sample["persona"].to_list()
    return [[texts[i] for i in row if i >= 0] for row in nearest]


def current(store: Store) -> tuple[Clustering | None, str | None]:
    """The live clustering (None before the first) and the ``CURRENT`` token to swap it against."""
    pointer, token = store.read_versioned("CURRENT")
    if pointer is None:
        return None, token
    folder = pointer.decode().strip()
    meta = json.loads(store.get(f"{folder}/clusters.json"))
    centroids = np.load(io.BytesIO(store.get(f"{folder}/centroids.npy")))
    return Clustering(folder, centroids, meta["labels"], meta["trained_on"], meta["embedder"]), token


def save(store: Store, clustering: Clustering, expected: str | None) -> Clustering:
    """Write ``clustering`` as a new version and make it the live one, if ``CURRENT`` is still
    ``expected``; :class:`ConcurrentUpdate` otherwise (the other run's clustering stands)."""
    folder = f"c-{os.urandom(6).hex()}"
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(clustering.centroids, dtype=np.float32))
    meta = {"labels": clustering.labels, "trained_on": clustering.trained_on, "embedder": clustering.embedder}
    store.put(f"{folder}/centroids.npy", buffer.getvalue())
    store.put(f"{folder}/clusters.json", json.dumps(meta, indent=2).encode())
    try:
        store.swap("CURRENT", folder.encode(), expected)
    except ConcurrentUpdate:
        store.delete([f"{folder}/centroids.npy", f"{folder}/clusters.json"])
        raise
    clustering.version = folder
    return clustering


def partition_vectors(hub_state: Store, partition: str) -> pl.DataFrame | None:
    """The stored embeddings of ``partition``'s kept personas (``persona_id``, ``vector``), read from
    the hub's saved state; None where the state does not record where they are (a state saved before
    it did, until the partition is grown again) — the caller embeds them instead."""
    manifest = HubIndex.manifest(hub_state)
    entry = next((e for e in (manifest or {}).get("partitions", []) if e["name"] == partition), None)
    if entry is None or "kept_rows" not in entry:
        return None
    return kept_vectors(hub_state, manifest["chunks"], entry["kept_rows"])
