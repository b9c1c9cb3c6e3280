"""The seam between the hub index and a distributed search: :class:`HubShards` is what a sharded
search of the saved hub answers (Ray's actors, :mod:`.on_ray`), and :func:`merge_best` joins the
shards' answers."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from personahub_dagster.core.hub.embedder import Embedder


class HubShards(Protocol):
    """The persisted part of a hub — rows ``0 … size-1`` of the kept set — searched where it is stored,
    in shards (:mod:`.on_ray`: actors on a Ray cluster, each holding some of the state's chunks), so
    that no process needs all of it. Both searches are exact and answer like the in-process ones: the
    best match of each query, the earliest among equals."""

    size: int

    def minhash_best(self, sigs: np.ndarray, rows_per_band: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :func:`minhash.best_in_hub` over the shards: (index or -1, estimated Jaccard)."""
        ...

    def top1(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The nearest kept vector of each query: (cosine, index; -1 when there is none)."""
        ...

    def ids_of(self, index: np.ndarray) -> list[str]:
        """The persona ids of the kept rows at ``index`` (each below ``size``)."""
        ...

    def close(self) -> None:
        """Free the engine's workers."""
        ...

    def encode(self, embedder: Embedder, texts: list[str]) -> np.ndarray | None:
        """The texts' embeddings by ``embedder``'s model in the engine's pool, or None to embed here."""
        ...


def merge_best(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard best matches ``(index or -1, score)`` given in hub order: the higher score
    wins, and among equals the earlier shard (so the earliest row), as one scan over the whole hub
    would have chosen."""
    best_j, best_s = (np.array(a, copy=True) for a in parts[0])
    for j, score in parts[1:]:
        better = (j >= 0) & ((best_j < 0) | (score > best_s))
        best_j, best_s = np.where(better, j, best_j), np.where(better, score, best_s)
    return best_j, best_s
