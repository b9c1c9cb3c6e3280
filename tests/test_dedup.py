"""Two-stage dedup with the real packaged embedder: MinHash for near-copies, embeddings for rewordings."""

from __future__ import annotations

import polars as pl
import pytest

from personahub_dagster.core.dedup import DedupConfig, Deduplicator, dedup_frame, lsh_rows_per_band
from personahub_dagster.core.embedder import Embedder

PERSONAS = [
    ("p1", "A pediatric nurse who works night shifts in a busy children's hospital."),
    ("p2", "A pediatric nurse who works night shifts in a busy children's hospital!"),  # punctuation only
    ("p3", "A jazz pianist who teaches harmony to adult beginners in Chicago."),
    ("p4", "A children's hospital nurse who works the night shift on a busy pediatric ward."),  # reworded p1
    ("p5", "A soil scientist studying no-till farming and water retention in Iowa."),
    ("p6", "A Jazz Pianist who teaches harmony to adult beginners in Chicago"),  # casing of p3
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_embedder_gives_unit_vectors(embedder):
    v = embedder.encode(["a nurse", "a pianist"])
    assert v.shape == (2, 384) and v.dtype.name == "float32"
    assert abs(float((v * v).sum(axis=1).max()) - 1.0) < 1e-4
    assert embedder.encode([]).shape == (0, 384)


def test_near_copies_and_rewordings_are_marked_not_dropped(embedder):
    df = pl.DataFrame({"persona_id": [k for k, _ in PERSONAS], "persona": [t for _, t in PERSONAS]})
    out = dedup_frame(df, embedder)
    assert out.height == len(PERSONAS)
    marks = {r["persona_id"]: (r["dup_of"], r["dup_reason"]) for r in out.iter_rows(named=True)}
    assert marks["p1"] == (None, None) and marks["p3"] == (None, None) and marks["p5"] == (None, None)
    assert marks["p2"] == ("p1", "minhash")
    assert marks["p6"] == ("p3", "minhash")
    assert marks["p4"] == ("p1", "embedding")
    assert out.filter(pl.col("dup_of").is_not_null())["similarity"].min() >= 0.9


def test_the_cosine_threshold_is_a_knob(embedder):
    df = pl.DataFrame({"persona_id": [k for k, _ in PERSONAS], "persona": [t for _, t in PERSONAS]})
    strict = dedup_frame(df, embedder, DedupConfig(cosine_threshold=0.99))
    assert strict.filter(pl.col("dup_reason") == "embedding").is_empty()


def test_growing_in_batches_equals_one_batch(embedder):
    keys, texts = [k for k, _ in PERSONAS], [t for _, t in PERSONAS]
    whole = Deduplicator(DedupConfig(block_size=2), embedder).add(keys, texts)
    grown = Deduplicator(DedupConfig(block_size=2), embedder)
    parts = [grown.add(keys[:3], texts[:3]), grown.add(keys[3:], texts[3:])]
    assert pl.concat(parts).drop("similarity").equals(whole.drop("similarity"))


def test_lsh_banding_for_the_paper_threshold():
    r = lsh_rows_per_band(0.9, 128)
    assert r == 8  # 16 bands of 8 rows: a 0.9-Jaccard pair is a candidate with p > 0.999
    assert 1 - (1 - 0.9**r) ** (128 // r) > 0.995
