"""Clusters of the hub: each day's stored vectors found from the state's record of its rows, the same as
embedding the day again; centroids saved once, a lost race yields the winner's clustering."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from personahub_dagster.core.hub import clusters
from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.growth import grow_hub
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.storage.store import ConcurrentUpdate, as_store


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


JOBS = ["nurse", "welder", "violinist", "banker", "teacher", "pilot", "chemist", "farmer"]


def day(name: str, offset: int, n: int = 24) -> pl.DataFrame:
    rows = [
        {
            "persona_id": f"p-{i:04d}",
            "persona": f"A {JOBS[i % 8]} from town {i} who collects stamps of {i * 7} countries.",
            "method": "text",
            "hop": 0,
            "source_text_id": "t",
            "partition": name,
            "created_at": now_utc(),
        }
        for i in range(offset, offset + n)
    ]
    return rows_frame("personas", rows)


def test_a_days_vectors_come_from_the_state_and_equal_a_fresh_embedding(tmp_path, embedder):
    store = as_store(tmp_path / "state")
    config = DedupConfig(cosine_threshold=0.995)
    for name, offset in (("d1", 0), ("d2", 100), ("d3", 200)):
        grow_hub(day(name, offset), store, embedder, config)
    vectors = clusters.partition_vectors(store, "d2")
    kept = HubIndex.manifest(store)["partitions"][1]
    assert kept["name"] == "d2" and kept["kept_rows"] == [[24, 48]]
    expected = day("d2", 100).sort("persona_id")
    got = vectors.sort("persona_id")
    assert got["persona_id"].to_list() == expected["persona_id"].to_list()
    fresh = embedder.encode(expected["persona"].to_list())
    assert np.allclose(got["vector"].to_numpy(), fresh, atol=1e-5)
    assert clusters.partition_vectors(store, "d9") is None


def test_a_state_that_does_not_record_rows_says_so(tmp_path, embedder):
    store = as_store(tmp_path / "state")
    grow_hub(day("d1", 0), store, embedder, DedupConfig())
    manifest = HubIndex.manifest(store)
    for entry in manifest["partitions"]:
        del entry["kept_rows"]  # as a state saved by an earlier release
    folder = manifest.pop("_folder")
    store.put(f"{folder}/manifest.json", json.dumps(manifest).encode())
    assert clusters.partition_vectors(store, "d1") is None


def test_training_saving_and_a_lost_race(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    points = np.concatenate([c + 0.05 * rng.normal(size=(40, 16)) for c in centres]).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centroids = clusters.train(points, 3, seed=1)
    made = clusters.Clustering("", centroids, ["a", "b", "c"], len(points), "test-embedder")
    ids, sims = made.assign(points)
    assert len({tuple(ids[k * 40 : (k + 1) * 40]) for k in range(3)}) == 3  # each true group one cluster
    assert all(len(set(ids[k * 40 : (k + 1) * 40])) == 1 for k in range(3)) and sims.min() > 0.9
    assert clusters.train(points[:12], 8).shape[0] == 2  # at least five points a centroid

    store = as_store(tmp_path / "clusters")
    assert clusters.current(store) == (None, None)
    saved = clusters.save(store, made, None)
    again, _ = clusters.current(store)
    assert again.version == saved.version and again.labels == ["a", "b", "c"]
    assert np.allclose(again.centroids, centroids)
    with pytest.raises(ConcurrentUpdate):  # another run saved first: this one's files are removed
        clusters.save(store, clusters.Clustering("", centroids, ["x"] * 3), None)
    assert clusters.current(store)[0].version == saved.version
    assert sorted(k.split("/")[0] for k in store.list() if k != "CURRENT") == [saved.version] * 2
