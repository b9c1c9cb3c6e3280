"""Hub growth on a Ray cluster (a real one-node cluster, ``ray start --head``): the saved state searched
by shard actors gives the marks one process gives, and the engine switch picks Ray by size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from personahub_dagster.core.hub.ann import planted_near_duplicates
from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.growth import Engine, grow_hub
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.on_ray import RayEngine, shard_memory, split_rows
from personahub_dagster.core.lake.schemas import rows_frame
from personahub_dagster.core.storage.store import as_store
from tests.support.vectors import TableEmbedder, unit_vectors

HUB = 12_000  # kept personas in the saved hub, saved as 4 chunks (4 earlier days)
DAY = 2_000
CONFIG = DedupConfig(block_size=512, ann_min_size=10**9)  # exact search: marks must be identical


def sentences(rng: np.random.Generator, n: int, words: int = 60) -> list[str]:
    vocab = np.array([f"w{i}" for i in range(20_000)])
    return [" ".join(vocab[rng.choice(len(vocab), words, replace=False)]) for _ in range(n)]


def personas(keys: list[str], texts: list[str], partition: str) -> pl.DataFrame:
    rows = [{"persona_id": k, "persona": t, "partition": partition, "hop": 0, "method": "text"}
            for k, t in zip(keys, texts, strict=True)]  # fmt: skip
    return rows_frame("personas", rows)


@pytest.fixture(scope="module")
def saved_hub(tmp_path_factory):
    """A hub of 12,000 kept personas grown over four days (four chunks of saved state), and a fifth
    day of 2,000 with planted duplicates of every kind: a word changed in a hub persona (MinHash), a
    hub vector moved to cosine 0.95 (embedding), the same among the day's own personas, fresh ones."""
    rng = np.random.default_rng(7)
    emb = TableEmbedder()
    hub_texts, hub_vecs = sentences(rng, HUB), unit_vectors(rng, HUB)
    emb.table.update(zip(hub_texts, hub_vecs, strict=True))
    store = as_store(tmp_path_factory.mktemp("hub_state"))
    earlier = pl.concat(
        personas([f"h{i:05d}" for i in range(d * HUB // 4, (d + 1) * HUB // 4)],
                 hub_texts[d * HUB // 4 : (d + 1) * HUB // 4], f"2026-05-0{d + 1}")
        for d in range(4)
    )  # fmt: skip
    for d in range(4):
        growth = grow_hub(earlier.filter(pl.col("partition") == f"2026-05-0{d + 1}"), store, emb, CONFIG)
        assert growth.engine == "local"
    assert growth.kept_total == HUB  # random sentences and vectors: nothing in the hub repeats
    texts, vecs = sentences(rng, DAY), unit_vectors(rng, DAY)
    pick = rng.choice(HUB, DAY // 2, replace=False)
    for k in range(0, DAY // 4):  # a word of a hub persona changed: Jaccard 59/61
        words = hub_texts[pick[k]].split()
        texts[k] = " ".join([*words[:-1], f"changed{k}"])
    vecs[DAY // 4 : DAY // 2] = planted_near_duplicates(hub_vecs[pick[DAY // 4 : DAY // 2]], 0.95, rng)
    vecs[DAY // 2 : DAY // 2 + DAY // 8] = planted_near_duplicates(vecs[-DAY // 8 :], 0.95, rng)
    emb.table.update(zip(texts, vecs, strict=True))
    return store, emb, earlier, [f"d{i:05d}" for i in range(DAY)], texts


def test_shards_split_the_hub_in_order_and_old_shards_never_change():
    assert split_rows([10, 10, 10, 10], 20) == [[0, 1], [2, 3]]
    assert split_rows([1, 1, 100], 2) == [[0, 1], [2]]
    assert split_rows([5], 4) == [[0]] and split_rows([], 2) == []
    groups = split_rows([3, 9, 2, 7, 7, 1], 10)
    assert [i for g in groups for i in g] == list(range(6))  # contiguous, in hub order
    assert split_rows([3, 9, 2, 7, 7, 1, 40], 10)[: len(groups) - 1] == groups[:-1]  # a new day: same shards


def test_the_ray_engine_marks_a_day_exactly_as_one_process(saved_hub, ray_cluster):
    store, emb, _, keys, texts = saved_hub
    local = HubIndex.load(store, CONFIG, emb)
    assert local is not None and local.remote is None
    expected = local.add(keys, texts)
    import ray

    free = ray.available_resources() if ray.is_initialized() else None
    remote = HubIndex.load(store, CONFIG, emb, RayEngine(ray_cluster, shard_rows=HUB // 2).shards)
    assert remote is not None and remote.remote is not None
    assert [len(a) for a in (remote._vectors, remote._sigs)] == [0, 0]  # the driver holds no vectors
    assert len(remote.ids) == HUB and list.__len__(remote.ids) == 0  # … and no ids: the shards name them
    try:
        # the shard actors declared what they hold: Ray reserved their CPUs and memory
        held = ray.available_resources()
        reserved = 2 * shard_memory(HUB // 2, emb.dimension, CONFIG)
        assert (free or ray.cluster_resources())["memory"] - held.get("memory", 0) >= reserved
        assert (free or ray.cluster_resources())["CPU"] - held.get("CPU", 0) >= 2 * 0.5
        got = remote.add(keys, texts)
    finally:
        remote.remote.close()
    assert got.equals(expected)
    reasons = got["dup_reason"].value_counts().sort("dup_reason")
    found = dict(zip(reasons["dup_reason"], reasons["count"], strict=True))
    # every planted duplicate found: DAY/4 by MinHash against the hub, DAY/4 by embedding against it,
    # DAY/8 within the day; nothing else
    rest = DAY - DAY // 2 - DAY // 8
    assert found == {"minhash": DAY // 4, "embedding": DAY // 4 + DAY // 8, None: rest}
    hub_hits = got.filter(pl.col("dup_of").str.starts_with("h"))
    assert hub_hits.height == DAY // 2


def test_above_ann_min_size_each_shard_searches_its_own_index_and_keeps_it(saved_hub, ray_cluster, tmp_path):
    """Approximate like one process above ``ann_min_size``: each shard an IVF-PQ index of its own,
    calibrated for 99% recall and re-ranked exactly; built once and kept in the store."""
    _, emb, earlier, keys, texts = saved_hub
    approximate = replace(CONFIG, ann_min_size=5_000)  # hub 12,000: approximate; shards of 6,000
    store = as_store(tmp_path / "state")
    hub = HubIndex(approximate, emb)
    for half in (earlier.head(HUB // 2), earlier.tail(HUB // 2)):  # two chunks
        hub.add(half["persona_id"].to_list(), half["persona"].to_list())
        hub.save(store)
    engine = RayEngine(ray_cluster, shard_rows=HUB // 2)
    for _ in range(2):
        state = HubIndex.load(store, approximate, emb, engine.shards)
        try:
            assert [i["search"].startswith("IVF-PQ") for i in state.remote.shard_info] == [True, True]
            got = state.add(keys, texts)
        finally:
            state.remote.close()
        built = sorted(k for k in store.list("shards") if k.endswith(".faiss"))
        assert len(built) == 2  # one index per shard, the second load reused them
    planted = got.slice(DAY // 4, DAY // 4)  # the day's personas whose vector is a hub vector moved
    found = planted.filter(pl.col("dup_reason") == "embedding")["dup_of"].str.starts_with("h").sum()
    assert found / planted.height >= 0.99


def test_grow_hub_takes_ray_above_its_size_and_the_saved_state_grows_the_same(
    saved_hub, ray_cluster, tmp_path
):
    store, emb, _, keys, texts = saved_hub
    day = personas(keys, texts, "2026-05-05")
    grown = {}
    for kind, min_size in (("local", HUB + 1), ("ray", HUB)):  # auto: Ray from a hub of HUB personas
        copy = as_store(tmp_path / kind)
        for key in store.list():
            copy.put(key, store.get(key))
        engine = Engine("auto", RayEngine(ray_cluster, shard_rows=HUB // 2), ray_min_hub_size=min_size)
        growth = grow_hub(day, copy, emb, CONFIG, engine=engine)
        assert growth.engine == kind and list(growth.hub) == ["2026-05-05"] and not growth.late
        grown[kind] = (growth, copy)
    local, ray = grown["local"][0], grown["ray"][0]
    assert ray.hub["2026-05-05"].equals(local.hub["2026-05-05"])
    assert ray.kept_total == local.kept_total == HUB + DAY - DAY // 2 - DAY // 8
    # the state the Ray run saved is a whole state: loaded in one process, it holds every kept persona
    reloaded = HubIndex.load(grown["ray"][1], CONFIG, emb)
    assert len(reloaded) == ray.kept_total and len(reloaded.vectors()) == ray.kept_total


def test_an_embedder_pool_gives_the_one_process_vectors(ray_cluster):
    jobs = ("carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian")
    texts = [f"A retired {job} who teaches evening classes to teenagers." for job in jobs] * 6
    model = Embedder()
    here = model.encode(texts)
    from personahub_dagster.core.hub.on_ray import RayHubShards

    shards = RayHubShards(RayEngine(ray_cluster, embed_workers=2), as_store("/nonexistent"), [], [], CONFIG)
    try:
        pooled = shards.encode(model, texts)
    finally:
        shards.close()
    assert pooled.shape == here.shape
    assert float((pooled * here).sum(axis=1).min()) > 0.99999


def test_a_shard_that_cannot_load_fails_the_growth_instead_of_rebuilding_it(saved_hub, ray_cluster, tmp_path):
    """A missing chunk on Ray is an error of the run, never "an unreadable state" (which would rebuild
    the whole hub in one process)."""
    import ray

    store, emb, *_ = saved_hub
    copy = as_store(tmp_path / "state")
    for key in store.list():
        copy.put(key, store.get(key))
    copy.delete([next(k for k in copy.list("chunks") if k.startswith("chunks/emb-"))])
    with pytest.raises(ray.exceptions.RayActorError):
        HubIndex.load(copy, CONFIG, emb, RayEngine(ray_cluster, shard_rows=HUB // 2).shards)
