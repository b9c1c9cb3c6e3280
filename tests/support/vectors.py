"""Known vectors for hub tests and benchmarks: an embedder that answers from a table, and random unit
vectors. Marking is what those measure; the model is tested and benchmarked on its own."""

from __future__ import annotations

import numpy as np

DIM = 384  # all-MiniLM-L6-v2's width


class TableEmbedder:
    """Vectors from a table filled by the caller (synthetic ones, or planted near-duplicates)."""

    model_name = "table-384"
    dimension = DIM

    def __init__(self) -> None:
        self.table: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, DIM), np.float32)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
