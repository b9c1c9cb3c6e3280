"""The embedder's backends: the exact torch path and the int8 ONNX fast path agree."""

from __future__ import annotations

import numpy as np
import pytest

from personahub_dagster.core.hub.embedder import Embedder

PERSONAS = [
    f"A {adj} {job} from {town} who {hobby}."
    for adj, job, town, hobby in zip(
        ["patient", "retired", "curious", "stubborn", "shy", "self-taught"] * 5,
        [
            "welder",
            "nurse",
            "pianist",
            "actuary",
            "beekeeper",
            "pilot",
            "chemist",
            "librarian",
            "carpenter",
            "midwife",
        ]
        * 3,
        ["Oslo", "Lima", "Nairobi", "Lisbon", "Hanoi"] * 6,
        ["restores barns", "teaches night classes", "keeps bees", "writes crosswords", "races pigeons"] * 6,
        strict=True,
    )
]


def test_the_int8_onnx_backend_agrees_with_the_exact_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAHUB_CACHE_DIR", str(tmp_path))
    exact = Embedder().encode(PERSONAS)
    fast = Embedder(backend="onnx-int8")
    vecs = fast.encode(PERSONAS)
    assert vecs.shape == exact.shape and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    cos = np.sum(vecs * exact, axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97
    assert list((tmp_path / "onnx").rglob("model-int8.onnx"))  # exported once, into the cache dir
    # Vectors of different backends never share a hub index: the state records which made them.
    assert fast.model_name != Embedder().model_name


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown embedder backend"):
        Embedder(backend="tensorrt")
