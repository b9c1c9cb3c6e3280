"""Near-duplicate removal for personas (Persona Hub §3): MinHash first, then embedding similarity —
incremental against everything already in the hub.

* **MinHash** over word 1-grams, 128 permutations, Jaccard ≥ 0.9 (:mod:`.minhash`, compiled kernels
  that write signatures straight into numpy). The LSH banding is chosen for the threshold
  (:func:`lsh_rows_per_band`) and every candidate is verified by estimated Jaccard before it counts.
  Within a batch a compiled earliest-wins loop indexes only the kept rows; against the hub, the hub's
  stored band keys stream once past a table of the batch's, and candidates are verified as they come.
* **Embeddings** (unit vectors, inner product = cosine) of the MinHash survivors, cosine ≥ 0.9 is a
  duplicate. Exact search (FAISS ``IndexFlatIP``) while the hub is small; above ``ann_min_size`` kept
  personas an IVF index of 4-bit product-quantized codes (trained once, then appended to) proposes
  candidates and the stored float vectors re-rank them exactly, so adding a partition costs far less
  than re-reading the hub; the lists probed per query are chosen when it is trained so that it finds
  ``ann_target_recall`` (99%) of near-duplicates planted among the hub's own vectors.

Duplicates are marked, never dropped: each persona gets ``dup_of`` (the kept persona it repeats),
``dup_reason`` (``minhash`` | ``embedding``) and ``similarity``. Within a batch the earliest persona in
the given order wins. :class:`HubIndex` keeps its state, and :func:`HubIndex.save`/``load`` keep it in
the lake, so a new partition is checked against the whole hub without re-hashing or re-embedding old
personas; growing partition by partition gives the same marks as one batch (exactly, below
``ann_min_size``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol

import faiss
import numba
import numpy as np
import polars as pl

from personahub_dagster.core.hub import minhash
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.minhash import band_keys
from personahub_dagster.core.storage.store import ConcurrentUpdate, Store, as_store

STATE_VERSION = 3  # 3: signatures from core.minhash (2 was rensa's); an older state is rebuilt
ANN_FLOOR = 1_000  # the 4-bit codes need this many vectors to train; below it search is always exact
_RERANK = 8  # candidates the approximate index proposes per query, re-ranked exactly
_LOADED = object()  # save(): compare CURRENT with the version this state was loaded from


class StateError(RuntimeError):
    """The hub's saved state cannot be used as it is; the message says what to run."""


def lsh_rows_per_band(threshold: float, num_perm: int, min_recall: float = 0.995) -> int:
    """The widest band (fewest false candidates) that still catches a pair at ``threshold`` with
    probability ≥ ``min_recall``: P = 1 - (1 - t^r)^b, with b·r = num_perm."""
    best = 1
    for r in (d for d in range(1, num_perm + 1) if num_perm % d == 0):
        if 1 - (1 - threshold**r) ** (num_perm // r) >= min_recall:
            best = r
    return best


@dataclass(frozen=True)
class DedupConfig:
    minhash_threshold: float = 0.9  # estimated Jaccard of word 1-grams that marks a near-duplicate
    num_perm: int = 128  # MinHash permutations: the estimate's precision
    cosine_threshold: float = 0.9  # embedding similarity that marks a semantic duplicate
    seed: int = 42  # of the permutations: part of the hub's state, fixed for a hub's lifetime
    block_size: int = 4096  # personas embedded and searched at a time
    ann_min_size: int = 50_000  # kept personas above which the embedding index is approximate (IVF-PQ)
    ann_target_recall: float = 0.99  # share of planted near-duplicates the approximate search must find …
    ann_nprobe: int | None = None  # … by choosing the lists probed per query when trained (or fix it here)


def chunk_rows(name: str) -> int:
    """Kept personas in a saved chunk, from its name (``<first row>-<end row>-<tag>``)."""
    first, end, _ = name.split("-", 2)
    return int(end) - int(first)


def _chunk_of(key: str) -> str:
    """The chunk name in a chunk file's key (``chunks/emb-<name>.npy`` → ``<name>``)."""
    return key.rsplit("/", 1)[-1].split("-", 1)[1].rsplit(".", 1)[0]


class KeptIds(list):
    """The kept ids of a state whose first ``offset`` rows live in remote shards: a list of the rows
    kept since (``self[offset + k]`` is item ``k``), whose length counts the remote rows too. Names of
    remote rows are asked of the shards (:meth:`HubIndex._names`), never held here."""

    def __init__(self, offset: int):
        super().__init__()
        self.offset = offset

    def __len__(self) -> int:
        return self.offset + super().__len__()

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            if start < self.offset:
                raise IndexError("the ids of rows held by remote shards are not here")
            return list.__getitem__(self, slice(start - self.offset, stop - self.offset))
        key = key + len(self) if key < 0 else key
        if key < self.offset:
            raise IndexError("the ids of rows held by remote shards are not here")
        return list.__getitem__(self, key - self.offset)


class HubShards(Protocol):
    """The persisted part of a hub — rows ``0 … size-1`` of the kept set — searched where it is stored,
    in shards (:mod:`.hub_ray`: actors on a Ray cluster, each holding some of the state's chunks), so
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


@dataclass
class Marks:
    """Per-persona marks of one batch; ``ref`` is the batch index of the kept persona when it is in
    the batch itself (None when it is in the hub), so references never depend on ids being unique."""

    dup_of: list[str | None]
    reason: list[str | None]
    sim: list[float | None]
    ref: list[int | None]
    nearest: list[float | None]  # cosine to the nearest kept persona when the embedding stage saw it

    @classmethod
    def empty(cls, n: int) -> Marks:
        return cls([None] * n, [None] * n, [None] * n, [None] * n, [None] * n)

    def set(self, i: int, of: str, reason: str, sim: float, ref: int | None = None) -> None:
        self.dup_of[i], self.reason[i], self.sim[i], self.ref[i] = of, reason, round(float(sim), 4), ref


@dataclass
class HubIndex:
    """The dedup state of a hub: kept personas' ids, MinHash signatures and LSH band keys, embeddings."""

    config: DedupConfig
    embedder: Embedder
    ids: list[str] = field(default_factory=list)
    _sigs: list[np.ndarray] = field(default_factory=list)  # kept MinHash signatures (uint32 blocks)
    _bands: list[np.ndarray] = field(default_factory=list)  # kept LSH band keys (uint64 blocks)
    _vectors: list[np.ndarray] = field(default_factory=list)  # kept embeddings, in id order (blocks)
    _ann: faiss.Index | None = None
    _flat: faiss.Index | None = None  # exact index of the held vectors below ann_min_size, appended to
    _chunks: list[str] = field(default_factory=list)  # saved chunk names (see save)
    _persisted: int = 0  # kept personas already in saved chunks
    _ann_trained_for: int = 0  # hub size when the ANN lists were trained
    _ann_nprobe: int = 1  # lists probed per query, chosen when the ANN was trained
    _new_texts: list[str] = field(default_factory=list)  # texts of personas kept since the last save
    _batch_sigs: np.ndarray | None = None  # signatures of the batch being added
    _token: str | None = None  # CURRENT's version when this state was loaded (None: a new state)
    remote: HubShards | None = None  # the persisted rows, searched in shards elsewhere (Ray)
    _offset: int = 0  # kept rows held by ``remote`` rather than in the blocks above

    @property
    def rows_per_band(self) -> int:
        return lsh_rows_per_band(self.config.minhash_threshold, self.config.num_perm)

    def __len__(self) -> int:
        return len(self.ids)

    # -- marking -------------------------------------------------------------------------------
    def add(self, keys: list[str], texts: list[str]) -> pl.DataFrame:
        """Mark ``keys`` (in order) against the hub and each other; the kept ones join the hub.

        Returns columns key, dup_of, dup_reason, similarity and nearest_similarity (the cosine to the
        nearest persona kept before it, for every persona that reached the embedding stage: the hub's
        diversity, one number per persona).
        """
        marks = Marks.empty(len(keys))
        survivors = self.mark_minhash(keys, texts, marks)
        for start in range(0, len(survivors), self.config.block_size):
            self._embedding_stage(survivors[start : start + self.config.block_size], keys, texts, marks)
        # A MinHash duplicate of a batch member that the embedding stage then found to be a duplicate
        # itself is re-pointed at that member's keeper: dup_of always names a kept persona. References
        # only go to earlier members, so one pass in order resolves every chain.
        for i, j in enumerate(marks.ref):
            if j is not None and marks.dup_of[j] is not None:
                marks.dup_of[i], marks.ref[i] = marks.dup_of[j], marks.ref[j]
        return pl.DataFrame(
            {
                "key": keys,
                "dup_of": marks.dup_of,
                "dup_reason": marks.reason,
                "similarity": marks.sim,
                "nearest_similarity": marks.nearest,
            },
            schema={
                "key": pl.Utf8,
                "dup_of": pl.Utf8,
                "dup_reason": pl.Utf8,
                "similarity": pl.Float64,
                "nearest_similarity": pl.Float64,
            },
        )

    def mark_minhash(self, keys: list[str], texts: list[str], marks: Marks) -> list[int]:
        """Mark MinHash duplicates; returns the indices of ``keys`` that survive, in order.

        First against the hub (:func:`minhash.best_in_hub`: the hub's stored band keys stream past a
        table of the batch's, candidates verified against stored signatures), then within the batch,
        among the rest (:func:`minhash.earliest_wins`). An item that repeats the hub is never kept, so
        checking the hub first is the same greedy order. Texts without a word take no part: an empty
        set has no Jaccard similarity (the embedding stage still sees them).
        """
        c = self.config
        if not keys:
            return []
        sigs = minhash.signatures(texts, c.num_perm, c.seed)
        self._batch_sigs = sigs
        if self.ids:
            hub_j, hub_sim = self._best_in_hub(sigs)
            hits = np.flatnonzero((hub_j >= 0) & (hub_sim >= c.minhash_threshold))
            for i, name in zip(hits.tolist(), self._names(hub_j[hits]), strict=True):
                marks.set(i, name, "minhash", hub_sim[i])
        eligible = np.array([d is None for d in marks.dup_of], dtype=bool)
        dup_of, sims = minhash.earliest_wins(sigs, self.rows_per_band, c.minhash_threshold, eligible)
        for i in np.flatnonzero(dup_of >= 0).tolist():
            j = int(dup_of[i])
            marks.set(i, keys[j], "minhash", sims[i], ref=j)
        return [i for i in range(len(keys)) if marks.dup_of[i] is None]

    def _best_in_hub(self, sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MinHash matches in the kept set: in the blocks held here, and in the remote shards."""
        local = minhash.best_in_hub(sigs, self.rows_per_band, self._bands, self._sigs)
        if self.remote is None:
            return local
        shifted = (np.where(local[0] >= 0, local[0] + self._offset, -1), local[1])
        return merge_best([self.remote.minhash_best(sigs, self.rows_per_band), shifted])

    def _names(self, index: np.ndarray) -> list[str]:
        """The ids of kept rows at ``index`` (hub order): held here, or named by the remote shards —
        one round trip for all of them — so the driver never holds the hub's ids."""
        index = np.asarray(index, dtype=np.int64)
        if self.remote is None:
            return [self.ids[j] for j in index.tolist()]
        names: list[str | None] = [None] * len(index)
        far = np.flatnonzero(index < self._offset)
        for k, name in zip(far.tolist(), self.remote.ids_of(index[far]) if len(far) else [], strict=True):
            names[k] = name
        for k in np.flatnonzero(index >= self._offset).tolist():
            names[k] = self.ids[int(index[k])]
        return names  # type: ignore[return-value]

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self.remote.encode(self.embedder, texts) if self.remote is not None else None
        return vecs if vecs is not None else self.embedder.encode(texts)

    def _embedding_stage(self, block: list[int], keys, texts, marks: Marks) -> None:
        """Check a block against the hub's vectors, then against its own earlier members; index the kept."""
        vecs = self._encode([texts[i] for i in block])
        hub_sim, hub_idx = self._search(vecs)
        best, within_ref = _earliest_wins_by_cosine(
            vecs @ vecs.T, hub_sim.astype(np.float64), hub_idx >= 0, self.config.cosine_threshold
        )
        kept: list[int] = []
        near = np.flatnonzero((within_ref < 0) & (hub_idx >= 0) & (best >= self.config.cosine_threshold))
        hub_names = dict(zip(near.tolist(), self._names(hub_idx[near]), strict=True))
        for b, i in enumerate(block):
            r = int(within_ref[b])
            if r >= 0:
                of, ref = keys[block[r]], block[r]
            elif hub_idx[b] >= 0:
                of, ref = hub_names.get(b), None  # named only when it is a duplicate
            else:  # the very first persona of an empty hub: nothing to compare with
                kept.append(b)
                continue
            marks.nearest[i] = round(float(best[b]), 4)
            if best[b] >= self.config.cosine_threshold:
                marks.set(i, of, "embedding", best[b], ref=ref)
            else:
                kept.append(b)
        rows = [block[b] for b in kept]
        self._append([keys[i] for i in rows], [texts[i] for i in rows], vecs[kept], self._batch_sigs[rows])

    # -- the kept set --------------------------------------------------------------------------
    def _append(
        self, keys: list[str], texts: list[str], vecs: np.ndarray, sigs: np.ndarray | None = None
    ) -> None:
        if not keys:
            return
        c = self.config
        sigs = sigs if sigs is not None else minhash.signatures(texts, c.num_perm, c.seed)
        self.ids.extend(keys)
        self._new_texts.extend(texts)
        self._sigs.append(sigs)
        self._bands.append(band_keys(sigs, self.rows_per_band))
        self._vectors.append(np.ascontiguousarray(vecs, dtype=np.float32))
        held = len(self.ids) - self._offset  # with remote shards: only the rows kept since the load
        if self._ann is not None and held <= 4 * self._ann_trained_for:
            self._ann.add(vecs)
        elif held > max(c.ann_min_size, ANN_FLOOR):
            # first time over the size, or 4× past the size the lists were trained for: (re)train, so
            # that each query still scans ~nprobe/√n of the hub
            self._ann, self._flat = self._build_ann(self.vectors()), None
            self._ann_trained_for = held
            self._ann_nprobe = self._calibrate_nprobe(self.vectors())
        elif self._flat is not None:
            self._flat.add(self._vectors[-1])

    def unsaved(self) -> tuple[list[str], list[str], np.ndarray]:
        """The personas kept since the state was loaded or saved: ids, texts and embeddings."""
        if len(self.ids) == self._persisted:
            dim = self.embedder.dimension
            return [], [], np.zeros((0, dim), np.float32)
        return (
            self.ids[self._persisted :],
            list(self._new_texts),
            _tail(self._vectors, self._persisted - self._offset),
        )

    def vectors(self) -> np.ndarray:
        """All kept embeddings as one matrix (consolidated once, then cached)."""
        if len(self._vectors) != 1:
            dim = self._vectors[0].shape[1] if self._vectors else self.embedder.dimension
            self._vectors = [
                np.concatenate(self._vectors) if self._vectors else np.zeros((0, dim), np.float32)
            ]
        return self._vectors[0]

    def _search(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 kept neighbour of each vector: (similarity, index into ``ids``; -1 when the hub is empty)."""
        if not self.ids:
            return np.full(len(vecs), -1.0, np.float32), np.full(len(vecs), -1, np.int64)
        local = self._ann_top1(vecs, self._ann_nprobe) if self._ann is not None else self._flat_top1(vecs)
        if self.remote is None:
            return local
        shifted = (np.where(local[1] >= 0, local[1] + self._offset, -1), local[0])
        idx, sim = merge_best([self.remote.top1(vecs)[::-1], shifted])
        return sim.astype(np.float32), idx

    def _flat_top1(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-1 over the kept vectors held in this process. The index is built once (from the
        loaded state) and appended to as personas are kept, so a block costs its search, not a copy
        of the kept set."""
        if self._flat is None:
            self._flat = faiss.IndexFlatIP(vecs.shape[1])
            for block in self._vectors:
                self._flat.add(np.ascontiguousarray(block, dtype=np.float32))
        if not self._flat.ntotal:
            return np.full(len(vecs), -1.0, np.float32), np.full(len(vecs), -1, np.int64)
        d, idx = self._flat.search(np.ascontiguousarray(vecs, dtype=np.float32), 1)
        return d[:, 0], idx[:, 0]

    def _ann_top1(self, vecs: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        return ann_top1(self._ann, self._vectors, vecs, nprobe)

    def _build_ann(self, vecs: np.ndarray) -> faiss.Index:
        return build_ann(vecs, self.config.seed)

    def _calibrate_nprobe(self, vecs: np.ndarray) -> int:
        return calibrate_nprobe(self._ann, [vecs], self.config)

    # -- persistence ---------------------------------------------------------------------------
    # chunks/ holds the source of truth in immutable, append-only pieces named by the range of kept
    # personas they cover plus a random tag (ids + texts, MinHash signatures, float32 embeddings), so a
    # save writes only what this run added and two writers never write the same name. The LSH and ANN
    # indexes are derived from them and written into a new version folder; CURRENT names the live
    # version and is replaced by compare-and-swap (a file lock locally, a conditional PUT on object
    # storage): of two runs that grew the same state at once, one commits and the other gets
    # ConcurrentUpdate and grows again from the winner's state. A version that cannot be read is an
    # error (retried first, see storage.retried), never "no state": only a missing CURRENT means that.
    def save(
        self,
        store: Store,
        extra: dict | None = None,
        expected: str | object | None = _LOADED,
        files: Mapping[str, bytes | Callable] | None = None,
    ) -> None:
        """Write what changed since :meth:`load` (new chunks, a new version folder with ``files`` beside
        the manifest), then move ``CURRENT`` to it — only if ``CURRENT`` is still what it was when this
        state was loaded (or ``expected``); :class:`ConcurrentUpdate` otherwise, with nothing of this
        save left referenced."""
        expected = self._token if expected is _LOADED else expected
        store = as_store(store)
        chunks, written = list(self._chunks), []
        if len(self.ids) > self._persisted:
            name = f"{self._persisted:012d}-{len(self.ids):012d}-{os.urandom(3).hex()}"
            kept = pl.DataFrame({"persona_id": self.ids[self._persisted :], "persona": self._new_texts})
            parts = {
                f"chunks/kept-{name}.parquet": kept.write_parquet,
                f"chunks/sig-{name}.npy": _npy(_tail(self._sigs, self._persisted - self._offset)),
                f"chunks/band-{name}.npy": _npy(_tail(self._bands, self._persisted - self._offset)),
                f"chunks/emb-{name}.npy": _npy(_tail(self._vectors, self._persisted - self._offset)),
            }
            for key, write in parts.items():
                store.put(key, write)
                written.append(key)
            chunks.append(name)
        folder = f"v-{os.urandom(6).hex()}"
        for key, data in (files or {}).items():
            store.put(f"{folder}/{key}", data)
            written.append(f"{folder}/{key}")
        if self._ann is not None and self.remote is None:  # with remote shards it covers today's rows only
            store.put(f"{folder}/ann.faiss", faiss.serialize_index(self._ann).tobytes())
            written.append(f"{folder}/ann.faiss")
        manifest = {
            "version": STATE_VERSION,
            "minhash": minhash.ALGORITHM,
            "config": asdict(self.config),
            "embedder": self.embedder.model_name,
            "kept": len(self.ids),
            "ann_trained_for": self._ann_trained_for if self.remote is None else 0,
            "ann_nprobe": self._ann_nprobe,
            "chunks": chunks,
            **(extra or {}),
        }
        store.put(f"{folder}/manifest.json", json.dumps(manifest, indent=2).encode())
        written.append(f"{folder}/manifest.json")
        previous, _ = store.read_versioned("CURRENT")
        try:
            token = store.swap("CURRENT", folder.encode(), expected)
        except ConcurrentUpdate:
            store.delete(written)
            raise
        keep = {folder, (previous or b"").decode().strip()}  # a reader may still be loading the last one
        store.delete([k for k in store.list() if k.startswith("v-") and k.split("/")[0] not in keep])
        self._chunks, self._persisted, self._new_texts = chunks, len(self.ids), []
        self._token = token

    def delete_unused_chunks(self, store: Store) -> None:
        """Delete the saved chunks this state does not use (what a rebuild left behind)."""
        used = set(self._chunks)
        store = as_store(store)
        store.delete([k for k in store.list("chunks") if _chunk_of(k) not in used])

    @classmethod
    def load(
        cls,
        store: Store | str | os.PathLike[str],
        config: DedupConfig,
        embedder: Embedder,
        shards: Callable[[Store, list[str], list[int], DedupConfig, int], HubShards] | None = None,
    ) -> HubIndex | None:
        """The saved state, or None if there is none or it was made with another config, embedder or
        MinHash algorithm (a state is only valid for the thresholds, permutations, hashing and model
        that built it; :func:`~.hub.grow_hub` refuses such a state rather than starting over). A state
        that exists but cannot be read raises (after retries). On a local lake signatures and
        embeddings are memory-mapped (only the rows a search touches are read); from object storage
        they are read whole. With ``shards`` (an engine: store, chunk names, their row counts, config
        → :class:`HubShards`) nothing of the saved hub is read here; its ids, signatures and vectors are
        read by the engine's workers, each its share."""
        store = as_store(store)
        manifest, token = cls.current(store)
        if (
            manifest is None
            or manifest.get("version") != STATE_VERSION
            or manifest.get("minhash") != minhash.ALGORITHM
            or manifest["config"] != asdict(config)
            or manifest["embedder"] != embedder.model_name
        ):
            return None
        chunk_names = manifest["chunks"]
        if shards is not None:
            # the shards read the chunks, ids included; the driver knows only their sizes (the names
            # say which rows each holds) and the rows kept from now on. An engine that cannot be
            # reached fails the growth, loudly.
            sizes = [chunk_rows(c) for c in chunk_names]
            remote = shards(store, chunk_names, sizes, config, embedder.dimension)
            state = cls(config, embedder, KeptIds(sum(sizes)), remote=remote)
            state._offset = state._persisted = sum(sizes)
            state._chunks, state._token = list(chunk_names), token
            return state
        kept = [load_kept(store, c, ["persona_id"])["persona_id"].to_list() for c in chunk_names]
        ids = [pid for chunk in kept for pid in chunk]
        ann_key = f"{manifest['_folder']}/ann.faiss"
        ann = (
            faiss.deserialize_index(np.frombuffer(store.get(ann_key), np.uint8))
            if store.exists(ann_key)
            else None
        )
        sigs = [load_npy(store, f"chunks/sig-{c}.npy") for c in chunk_names]
        bands = [load_npy(store, f"chunks/band-{c}.npy") for c in chunk_names]
        vectors = [load_npy(store, f"chunks/emb-{c}.npy") for c in chunk_names]
        state = cls(config, embedder, ids, sigs, bands, vectors, ann)
        state._chunks, state._persisted, state._token = list(chunk_names), len(state.ids), token
        state._ann_trained_for = manifest.get("ann_trained_for", 0)
        state._ann_nprobe = manifest.get("ann_nprobe", 1)
        return state

    @staticmethod
    def current(store: Store | str | os.PathLike[str]) -> tuple[dict | None, str | None]:
        """The live version's manifest (with its folder under ``_folder``) and CURRENT's version token,
        for :meth:`save`'s compare-and-swap; (None, None) when there is no state (no CURRENT).
        :class:`StateError` when CURRENT names a version that is not there."""
        store = as_store(store)
        for _ in range(3):
            data, token = store.read_versioned("CURRENT")
            if data is None:
                return None, None
            folder = data.decode().strip()
            try:
                return {**json.loads(store.get(f"{folder}/manifest.json")), "_folder": folder}, token
            except FileNotFoundError:  # replaced (and cleaned up) by two saves since CURRENT was read?
                if store.read_versioned("CURRENT")[1] == token:
                    break
        raise StateError(
            f"{store.uri('CURRENT')} names {folder}, whose manifest is missing: the hub state is damaged; "
            "`personahub hub rebuild` makes it anew from the lake's personas"
        )

    @classmethod
    def manifest(cls, store: Store | str | os.PathLike[str]) -> dict | None:
        return cls.current(store)[0]


def ann_top1(
    index: faiss.Index, blocks: list[np.ndarray], vecs: np.ndarray, nprobe: int
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-1: the index proposes ``_RERANK`` candidates from its 4-bit codes, and their
    exact cosines (from the stored float vectors, ``blocks`` in index order) pick the nearest — so
    similarities are exact."""
    index.nprobe = nprobe
    _, cand = index.search(np.ascontiguousarray(vecs, dtype=np.float32), _RERANK)
    unique, inverse = np.unique(cand[cand >= 0], return_inverse=True)
    exact = np.full(cand.shape, -np.inf, np.float32)
    if len(unique):
        rows = _gather(blocks, unique)[inverse]  # one row per valid candidate
        q = np.repeat(np.arange(len(vecs)), (cand >= 0).sum(axis=1))
        exact[cand >= 0] = np.einsum("ij,ij->i", rows, vecs[q])
    best = exact.argmax(axis=1)
    idx = cand[np.arange(len(vecs)), best]
    return np.where(idx >= 0, exact[np.arange(len(vecs)), best], -1.0).astype(np.float32), idx


def build_ann(vecs: np.ndarray, seed: int) -> faiss.Index:
    """IVF with 4-bit product-quantized codes scanned with SIMD ("fast scan"): ~1/40 the size of the
    float vectors, so it loads, saves and scans in a fraction of the time; appendable without
    retraining; ~4·√n lists, trained on (a sample of) the vectors it starts with. The codes only
    propose candidates — :func:`ann_top1` re-ranks them exactly."""
    n, dim = vecs.shape
    nlist = int(min(65536, 4 * np.sqrt(n), max(1, n // 39)))
    subquantizers = max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)  # 8 dims each
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, subquantizers, 4, faiss.METRIC_INNER_PRODUCT)
    sample = vecs[np.sort(np.random.default_rng(seed).permutation(n)[: nlist * 50])]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.add(vecs)
    return index


def calibrate_nprobe(index: faiss.Index, blocks: list[np.ndarray], config: DedupConfig) -> int:
    """The fewest lists per query (1, 2, 4, …) with which ``index`` finds ≥ ``ann_target_recall`` of
    planted near-duplicates of its own vectors (``blocks``, in index order).

    Recall of an IVF index depends on how the data clusters, so it is measured on the hub itself:
    up to 1,000 kept vectors are each moved in a random direction to a cosine between the dedup
    threshold and halfway to 1 — a near-duplicate the embedding stage must catch — and a query
    counts as found when the search returns that vector or one at least as close. Random
    directions spread the change over every dimension, which is harder for IVF than real rewordings.
    """
    c = config
    if c.ann_nprobe:
        return c.ann_nprobe
    rng = np.random.default_rng(c.seed)
    n = sum(len(b) for b in blocks)
    pick = np.sort(rng.choice(n, size=min(1000, n), replace=False))
    base = np.asarray(_gather(blocks, pick), dtype=np.float32)
    cos = rng.uniform(c.cosine_threshold, (1 + c.cosine_threshold) / 2, (len(pick), 1))
    queries = planted_near_duplicates(base, cos, rng)
    planted = (queries * base).sum(axis=1)
    nprobe = 1
    while nprobe < index.nlist:
        sim, idx = ann_top1(index, blocks, queries, nprobe)
        if ((idx == pick) | (sim >= planted - 1e-6)).mean() >= c.ann_target_recall:
            break
        nprobe = min(2 * nprobe, index.nlist)
    return nprobe


def _npy(array: np.ndarray):
    return lambda fh: np.save(fh, array)


def _source(store: Store, key: str):
    """A local path (read in place) or the object's bytes."""
    path = store.local_path(key)
    return path if path is not None else io.BytesIO(store.get(key))


def load_kept(store: Store, chunk: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A saved chunk's kept personas (``persona_id``, ``persona``), or the ``columns`` asked for."""
    return pl.read_parquet(_source(store, f"chunks/kept-{chunk}.parquet"), columns=columns)


def load_npy(store: Store, key: str) -> np.ndarray:
    path = store.local_path(key)
    return np.load(path, mmap_mode="r") if path is not None else np.load(io.BytesIO(store.get(key)))


def planted_near_duplicates(base: np.ndarray, cos, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at cosine ``cos`` (a number or one per row) to the unit rows of ``base``, each
    moved in a random direction: near-duplicates with a known answer, for measuring approximate search."""
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = np.asarray(cos, dtype=np.float32)
    return np.ascontiguousarray(cos * base + np.sqrt(1 - cos**2) * noise, dtype=np.float32)


def _tail(blocks: list[np.ndarray], start: int) -> np.ndarray:
    """Rows ``start:`` of the concatenation of ``blocks``, without reading the blocks before them."""
    parts, offset = [], 0
    for block in blocks:
        if offset + len(block) > start:
            parts.append(np.asarray(block[max(0, start - offset) :]))
        offset += len(block)
    return np.concatenate(parts)


@numba.njit(cache=True, nogil=True)
def _earliest_wins_by_cosine(within, hub_sim, has_hub, threshold):
    """The embedding stage's greedy loop, compiled: row ``b`` of the block is compared with the hub's
    nearest (``hub_sim``) and with every earlier *kept* row; the best of them (a kept row only when
    strictly better than the hub; among rows, the earliest of equals) is its nearest, and it is kept
    when that is below ``threshold``. Returns (nearest similarity, the kept row it was nearest to or -1)."""
    m = within.shape[0]
    kept = np.empty(m, np.int64)
    n_kept = 0
    best = np.empty(m, np.float64)
    ref = np.full(m, -1, np.int64)
    for b in range(m):
        value = hub_sim[b] if has_hub[b] else -np.inf
        for k in range(n_kept):
            if within[b, kept[k]] > value:
                value, ref[b] = within[b, kept[k]], kept[k]
        best[b] = value
        if not (value >= threshold):
            kept[n_kept] = b
            n_kept += 1
    return best, ref


def _gather(blocks: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows at sorted global ``index`` from row ``blocks`` (memory-mapped: only those rows are read)."""
    bounds = np.cumsum([0] + [len(b) for b in blocks])
    out = []
    for k, block in enumerate(blocks):
        lo, hi = np.searchsorted(index, [bounds[k], bounds[k + 1]])
        if hi > lo:
            out.append(np.asarray(block[index[lo:hi] - bounds[k]]))
    return np.concatenate(out)


def dedup_frame(
    df: pl.DataFrame,
    embedder: Embedder,
    config: DedupConfig | None = None,
    text_col: str = "persona",
    key_col: str = "persona_id",
) -> pl.DataFrame:
    """``df`` (in its given order) with ``dup_of``, ``dup_reason`` and ``similarity`` columns added."""
    marks = HubIndex(config or DedupConfig(), embedder).add(df[key_col].to_list(), df[text_col].to_list())
    return df.with_columns(marks.drop("key"))
