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

from dataclasses import dataclass, field

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.hub import minhash
from personahub_dagster.core.hub.ann import ANN_FLOOR, ann_top1, build_ann, calibrate_nprobe
from personahub_dagster.core.hub.chunks import rows_from
from personahub_dagster.core.hub.config import DedupConfig, lsh_rows_per_band
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.marks import Marks, earliest_wins_by_cosine
from personahub_dagster.core.hub.minhash import band_keys
from personahub_dagster.core.hub.shards import HubShards, merge_best
from personahub_dagster.core.hub.state import SavedState


@dataclass
class HubIndex(SavedState):
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
        best, within_ref = earliest_wins_by_cosine(
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
            rows_from(self._vectors, self._persisted - self._offset),
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
