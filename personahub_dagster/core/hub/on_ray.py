"""Hub growth past one machine: the hub's saved state searched in shards on a Ray cluster, and the new
partition embedded by a pool of embedder actors.

At a billion personas the kept state — 384 float32 per persona (1.5 TB), 128 MinHash values and the
LSH band keys — fits no single process, but one day's partition still does. So the work is cut where
the data is: each **shard actor** reads a contiguous run of the state's chunks straight from the
lake's store (a local lake's files memory-mapped, an object store's objects downloaded by that actor
alone — the driver never holds them) and answers two questions for a batch of the partition:

* its best MinHash match per persona — the same kernel as in one process
  (:func:`~.minhash.best_in_hub`: the batch's band keys in a table, the shard's keys streamed past it,
  candidates verified by estimated Jaccard), and
* its nearest kept vector per persona — exact inner product (FAISS ``IndexFlatIP``) over its vectors.

The driver merges the shards' answers in hub order (:func:`~.shards.merge_best`: the higher score,
the earliest among equals), which is what one scan of the whole hub gives — so the marks are the
single-process marks. What stays on the driver is the day-sized serial step: earliest-wins within the
partition (the compiled greedy loops of :mod:`.index`) and the rows kept today.

The engine is chosen by ``persona_hub``'s config (``engine: auto | local | ray``); ``auto`` takes Ray
once the saved hub holds ``ray_min_hub_size`` personas. Ray is an optional dependency (``[ray]``
extra); this module imports it only when a cluster is used.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import faiss
import numpy as np

from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.hub import minhash
from personahub_dagster.core.hub.ann import ANN_FLOOR, ann_top1, build_ann, calibrate_nprobe
from personahub_dagster.core.hub.chunks import load_kept, load_npy
from personahub_dagster.core.hub.config import DedupConfig, lsh_rows_per_band
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.shards import merge_best
from personahub_dagster.core.storage.location import Location
from personahub_dagster.core.storage.store import Store


class ShardSearch:
    """One shard of a hub's saved state: chunks ``names`` (rows ``offset …``), loaded once.

    Its vectors are searched exactly while the hub is below ``config.ann_min_size`` (as in one
    process); above it the shard has an IVF-PQ index of its own — built once and kept in the store
    under ``shards/`` (a shard's chunks never change, so only the newest shard is ever built again),
    its lists probed as calibrated for ``ann_target_recall`` on the shard's own vectors — and re-ranks
    the candidates exactly, like the in-process index."""

    def __init__(
        self,
        location: Location,
        prefix: str,
        names: list[str],
        offset: int,
        config: DedupConfig,
        hub_size: int,
    ):
        store = Store(location, prefix)
        self.offset = offset
        self.ids = [pid for n in names for pid in load_kept(store, n, ["persona_id"])["persona_id"].to_list()]
        self.sigs = [load_npy(store, f"chunks/sig-{n}.npy") for n in names]
        self.bands = [load_npy(store, f"chunks/band-{n}.npy") for n in names]
        self.vectors = [np.asarray(load_npy(store, f"chunks/emb-{n}.npy"), np.float32) for n in names]
        self.rows = sum(len(v) for v in self.vectors)
        self.ann, self.nprobe = None, 1
        if self.rows and hub_size > max(config.ann_min_size, ANN_FLOOR) and self.rows >= ANN_FLOOR:
            self.ann, self.nprobe = self._ann(store, names, config)
        elif self.rows:
            self.flat = faiss.IndexFlatIP(self.vectors[0].shape[1])
            for block in self.vectors:
                self.flat.add(np.ascontiguousarray(block))

    def _ann(self, store: Store, names: list[str], config: DedupConfig) -> tuple[faiss.Index, int]:
        key = f"shards/ann-{digest(names, asdict(config))[:20]}"
        if store.exists(f"{key}.faiss"):
            index = faiss.deserialize_index(np.frombuffer(store.get(f"{key}.faiss"), np.uint8))
            return index, int(json.loads(store.get(f"{key}.json"))["nprobe"])
        index = build_ann(np.concatenate(self.vectors), config.seed)
        nprobe = calibrate_nprobe(index, self.vectors, config)
        store.put(f"{key}.faiss", faiss.serialize_index(index).tobytes())
        store.put(f"{key}.json", json.dumps({"nprobe": nprobe, "chunks": names}).encode())
        return index, nprobe

    def minhash_best(self, sigs: np.ndarray, rows_per_band: int) -> tuple[np.ndarray, np.ndarray]:
        j, score = minhash.best_in_hub(sigs, rows_per_band, self.bands, self.sigs)
        return np.where(j >= 0, j + self.offset, -1), score

    def top1(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if not self.rows:
            return np.full(len(vecs), -1.0, np.float32), np.full(len(vecs), -1, np.int64)
        if self.ann is not None:
            sim, idx = ann_top1(self.ann, self.vectors, vecs, self.nprobe)
        else:
            sim, idx = (a[:, 0] for a in self.flat.search(vecs, 1))
        return sim, np.where(idx >= 0, idx + self.offset, -1)

    def ids_of(self, index: np.ndarray) -> list[str]:
        return [self.ids[j - self.offset] for j in np.asarray(index).tolist()]

    def describe(self) -> dict:
        return {"rows": self.rows, "search": f"IVF-PQ, nprobe {self.nprobe}" if self.ann else "exact"}


class EmbedWorker:
    """An embedder in an actor of its own: the model loads once per actor."""

    def __init__(self, model: str, batch_size: int, backend: str):
        from personahub_dagster.core.hub.embedder import Embedder

        self.embedder = Embedder(model, batch_size, backend=backend)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide: ``address`` of the cluster (None: the one this process is connected to, or a
    local one started for it); ``shard_rows``, the kept personas one shard actor holds (its vectors are
    ``shard_rows`` × 1.5 KB: 2M ≈ 3 GB); embedder actors (0: the driver embeds) and the CPUs each holds.
    Every actor declares what it uses: a shard ``shard_cpus`` and the memory its rows take
    (:func:`shard_memory`), an embedder ``embed_cpus`` and :data:`EMBEDDER_BYTES` — so Ray places them
    on nodes that have it, an autoscaler adds nodes for them, and the memory monitor protects them.
    Shards are spread over the nodes; more nodes answer more shards at once, the shards stay the same."""

    address: str | None = None
    shard_rows: int = 2_000_000
    embed_workers: int = 0
    embed_cpus: float = 1.0
    shard_cpus: float = 0.5

    def shards(
        self, store: Store, chunk_names: list[str], sizes: list[int], config: DedupConfig, dim: int = 384
    ) -> RayHubShards:
        return RayHubShards(self, store, chunk_names, sizes, config, dim)


SHARD_BASE_BYTES = 300 * 2**20  # an actor's own process: Python, numpy, FAISS
EMBEDDER_BYTES = 1 * 2**30  # an embedder actor: torch and the model


def shard_memory(rows: int, dim: int, config: DedupConfig) -> int:
    """Bytes a shard actor holds for ``rows`` kept personas: float32 vectors, MinHash signatures and
    band keys, the exact index's copy of the vectors (or the IVF-PQ codes above ``ann_min_size``,
    far smaller), plus the process itself — what Ray reserves for it, so that it places the actor
    on a node with that much memory free and never packs more shards onto a node than it holds."""
    bands = config.num_perm // lsh_rows_per_band(config.minhash_threshold, config.num_perm)
    per_row = 2 * 4 * dim + 4 * config.num_perm + 8 * bands
    return SHARD_BASE_BYTES + rows * per_row


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` unless this process already is connected to one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def split_rows(sizes: list[int], shard_rows: int) -> list[list[int]]:
    """Chunk indices grouped into shards: a chunk goes to shard ``start row // shard_rows``. Groups are
    contiguous (shard ``k`` holds rows before shard ``k+1``'s: the merge stays in hub order) and stable
    — a shard's chunks never change as the hub grows, only the newest shard gets new ones."""
    groups: dict[int, list[int]] = {}
    start = 0
    for i, n in enumerate(sizes):
        groups.setdefault(start // max(1, shard_rows), []).append(i)
        start += n
    return [groups[k] for k in sorted(groups)]


class RayHubShards:
    """:class:`~.shards.HubShards` on Ray: one :class:`ShardSearch` actor per group of chunks, and an
    optional pool of :class:`EmbedWorker` actors for the partition's embeddings."""

    def __init__(
        self,
        engine: RayEngine,
        store: Store,
        chunk_names: list[str],
        sizes: list[int],
        config: DedupConfig,
        dim: int = 384,
    ):
        import ray

        connect(engine.address)
        self.size = sum(sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        shard = ray.remote(scheduling_strategy="SPREAD")(ShardSearch)
        groups = split_rows(sizes, engine.shard_rows)
        self.starts = [int(offsets[group[0]]) for group in groups]  # first hub row of each shard
        self.actors = [
            shard.options(
                num_cpus=engine.shard_cpus, memory=shard_memory(sum(sizes[i] for i in group), dim, config)
            ).remote(
                store.location, store.prefix, [chunk_names[i] for i in group], int(offsets[group[0]]),
                config, self.size,
            )
            for group in groups
        ]  # fmt: skip
        try:
            self.shard_info = ray.get([a.describe.remote() for a in self.actors])  # loaded, or failed
        except Exception:
            for actor in self.actors:
                ray.kill(actor)
            raise
        self.engine = engine
        self.embedders: list = []
        self._embed_spec: tuple[str, int, str] | None = None
        self.search_s = 0.0  # wall time spent waiting for the shards' answers

    def minhash_best(self, sigs: np.ndarray, rows_per_band: int) -> tuple[np.ndarray, np.ndarray]:
        import ray

        started = time.perf_counter()
        batch = ray.put(sigs)
        parts = ray.get([a.minhash_best.remote(batch, rows_per_band) for a in self.actors])
        self.search_s += time.perf_counter() - started
        return merge_best(parts)

    def top1(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import ray

        started = time.perf_counter()
        batch = ray.put(np.ascontiguousarray(vecs, dtype=np.float32))
        parts = ray.get([a.top1.remote(batch) for a in self.actors])
        self.search_s += time.perf_counter() - started
        idx, sim = merge_best([(i, s) for s, i in parts])
        return sim.astype(np.float32), idx

    def ids_of(self, index: np.ndarray) -> list[str]:
        """The ids of hub rows at ``index``, each asked of the shard that holds it (in one round)."""
        import ray

        index = np.asarray(index, dtype=np.int64)
        shard = np.searchsorted(self.starts, index, side="right") - 1
        refs = {k: self.actors[k].ids_of.remote(index[shard == k]) for k in np.unique(shard).tolist()}
        answers = {k: iter(v) for k, v in zip(refs, ray.get(list(refs.values())), strict=True)}
        return [next(answers[k]) for k in shard.tolist()]

    def encode(self, embedder: Embedder, texts: list[str]) -> np.ndarray | None:
        """The texts' embeddings from ``engine.embed_workers`` actors running ``embedder``'s model, each
        a contiguous slice; None without a pool (the driver embeds). sentence-transformers batches by
        length within what it is given, so a text's vector can differ from the one-process vector in
        the last float bits (cosine to it > 0.99999, tested) — marks differ only for a pair within
        that of the threshold."""
        import ray

        if self.engine.embed_workers <= 0 or not texts:
            return None
        spec = (embedder.base_model, embedder.batch_size, embedder.backend)
        if self._embed_spec != spec:
            for actor in self.embedders:
                ray.kill(actor)
            worker = ray.remote(num_cpus=self.engine.embed_cpus, memory=EMBEDDER_BYTES)(EmbedWorker)
            self.embedders = [worker.remote(*spec) for _ in range(self.engine.embed_workers)]
            self._embed_spec = spec
        per = -(-len(texts) // len(self.embedders))
        slices = [texts[k * per : (k + 1) * per] for k in range(len(self.embedders))]
        refs = [e.encode.remote(part) for e, part in zip(self.embedders, slices, strict=True) if part]
        return np.concatenate(ray.get(refs))

    def close(self) -> None:
        import ray

        for actor in [*self.actors, *self.embedders]:
            ray.kill(actor)
        self.actors, self.embedders = [], []
