"""Near-duplicate removal for personas (Persona Hub §3): MinHash first, then embedding similarity —
incremental against everything already in the hub.

* **MinHash** over word 1-grams, 128 permutations, Jaccard ≥ 0.9 (rensa, a Rust MinHash). The LSH
  banding is chosen for the threshold (:func:`lsh_rows_per_band`) and every candidate is verified by
  estimated Jaccard before it counts. Within a batch rensa's deduplicator runs the loop in Rust; against
  the hub, band keys are joined in polars and candidate signatures compared in numpy.
* **Embeddings** (unit vectors, inner product = cosine) of the MinHash survivors, cosine ≥ 0.9 is a
  duplicate. Exact search (FAISS ``IndexFlatIP``) while the hub is small; above ``ann_min_size`` kept
  personas an IVF index with 8-bit scalar quantization (trained once, then appended to), so adding a
  partition costs far less than re-reading the hub.

Duplicates are marked, never dropped: each persona gets ``dup_of`` (the kept persona it repeats),
``dup_reason`` (``minhash`` | ``embedding``) and ``similarity``. Within a batch the earliest persona in
the given order wins. :class:`HubIndex` keeps its state, and :func:`HubIndex.save`/``load`` keep it in
the lake, so a new partition is checked against the whole hub without re-hashing or re-embedding old
personas; growing partition by partition gives the same marks as one batch (exactly, below
``ann_min_size``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
import polars as pl
from rensa import RMinHash, RMinHashDeduplicator

from personahub_dagster.core.embedder import Embedder
from personahub_dagster.core.lake import atomic_write

STATE_VERSION = 2


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
    minhash_threshold: float = 0.9
    num_perm: int = 128
    cosine_threshold: float = 0.9
    seed: int = 42
    block_size: int = 4096
    ann_min_size: int = 50_000  # kept personas above which the embedding index is approximate (IVF-SQ8)
    ann_nprobe: int = 16


def tokenize(texts: list[str]) -> list[list[str]]:
    """Word 1-grams (lower-cased ``[a-z0-9']+`` runs), vectorized in polars."""
    if not texts:
        return []
    return pl.Series(texts, dtype=pl.Utf8).str.to_lowercase().str.extract_all(r"[a-z0-9']+").to_list()


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
    _chunks: list[str] = field(default_factory=list)  # saved chunk names (see save)
    _persisted: int = 0  # kept personas already in saved chunks
    _ann_trained_for: int = 0  # hub size when the ANN lists were trained
    _new_texts: list[str] = field(default_factory=list)  # texts of personas kept since the last save
    _batch_tokens: list[list[str]] = field(default_factory=list)  # the batch being added …
    _batch_sigs: np.ndarray | None = None  # … and its signatures, when the hub check needed them

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

    def _minhashes(self, token_sets: list[list[str]]) -> list[RMinHash]:
        return RMinHash.from_token_sets(token_sets, num_perm=self.config.num_perm, seed=self.config.seed)

    def mark_minhash(self, keys: list[str], texts: list[str], marks: Marks) -> list[int]:
        """Mark MinHash duplicates; returns the indices of ``keys`` that survive, in order.

        First against the hub: the batch's LSH band keys are joined with the hub's (one polars hash
        join, no index to load or rewrite), and all candidate pairs are verified at once by comparing
        stored signatures (numpy). Then within the batch, among the rest:
        rensa's deduplicator runs the earliest-wins loop in Rust. An item that repeats the hub is never
        kept, so checking the hub first is the same greedy order.
        """
        c = self.config
        if not keys:
            return []
        tokens = tokenize(texts)
        mh = self._minhashes(tokens)
        self._batch_tokens, self._batch_sigs = tokens, None
        if self.ids:
            self._batch_sigs = signatures(tokens, c)
            rows, hub = self._hub_candidates(band_keys(self._batch_sigs, self.rows_per_band))
            for i, j, sim in zip(*self._best_hub_matches(self._batch_sigs, rows, hub), strict=True):
                if sim >= c.minhash_threshold:
                    marks.set(int(i), self.ids[j], "minhash", sim)
        rest = [i for i in range(len(keys)) if marks.dup_of[i] is None]
        within = RMinHashDeduplicator(c.minhash_threshold, c.num_perm, True, c.num_perm // self.rows_per_band)
        added = within.add_pairs([(str(i), mh[i]) for i in rest])
        survivors = []
        for i, ok in zip(rest, added, strict=True):
            if not ok:
                earlier = sorted(j for j in map(int, within.get_duplicates(mh[i])) if j < i)
                best, best_j = _best_match(mh[i], earlier, mh)
                if best >= c.minhash_threshold:
                    marks.set(i, keys[best_j], "minhash", best, ref=best_j)
                    continue
            survivors.append(i)
        return survivors

    def _hub_candidates(self, bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch row, hub index) pairs that share at least one LSH band key."""
        width = bands.shape[1]
        batch = pl.DataFrame({"key": bands.ravel(), "row": np.repeat(np.arange(len(bands)), width)})
        hub = pl.DataFrame({"key": np.concatenate([np.asarray(b).ravel() for b in self._bands])})
        pairs = (
            hub.with_row_index("pos")
            .join(batch, on="key", how="inner")
            .select(pl.col("row"), (pl.col("pos") // width).cast(pl.Int64).alias("hub"))
            .unique()
        )
        return pairs["row"].to_numpy(), pairs["hub"].to_numpy()

    def _best_hub_matches(
        self, sigs: np.ndarray, rows: np.ndarray, hub: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """For each batch row with hub candidates: (row, best hub index, Jaccard estimate), ties to the
        earliest hub persona. Vectorized over all candidate pairs."""
        total = len(rows)
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        unique, inverse = np.unique(hub, return_inverse=True)
        hub_sigs = _gather(self._sigs, unique)
        sims = np.empty(total, np.float32)
        for start in range(0, total, 1 << 18):
            part = slice(start, start + (1 << 18))
            sims[part] = (sigs[rows[part]] == hub_sigs[inverse[part]]).mean(axis=1)
        order = np.lexsort((hub, -sims, rows))
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        return rows[first], hub[first], sims[first]

    def _embedding_stage(self, block: list[int], keys, texts, marks: Marks) -> None:
        """Check a block against the hub's vectors, then against its own earlier members; index the kept."""
        vecs = self.embedder.encode([texts[i] for i in block])
        hub_sim, hub_idx = self._search(vecs)
        within = vecs @ vecs.T
        kept: list[int] = []
        t = self.config.cosine_threshold
        for b, i in enumerate(block):
            best, best_key, ref = float(hub_sim[b]), (self.ids[hub_idx[b]] if hub_idx[b] >= 0 else None), None
            if kept:
                k = kept[int(np.argmax(within[b, kept]))]
                if within[b, k] > best:
                    best, best_key, ref = float(within[b, k]), keys[block[k]], block[k]
            marks.nearest[i] = round(best, 4) if best_key is not None else None
            if best_key is not None and best >= t:
                marks.set(i, best_key, "embedding", best, ref=ref)
            else:
                kept.append(b)
        rows = [block[b] for b in kept]
        sigs = (
            self._batch_sigs[rows]
            if self._batch_sigs is not None
            else signatures([self._batch_tokens[i] for i in rows], self.config)
        )
        self._append([keys[i] for i in rows], [texts[i] for i in rows], vecs[kept], sigs)

    # -- the kept set --------------------------------------------------------------------------
    def _append(
        self, keys: list[str], texts: list[str], vecs: np.ndarray, sigs: np.ndarray | None = None
    ) -> None:
        if not keys:
            return
        c = self.config
        sigs = sigs if sigs is not None else signatures(tokenize(texts), c)
        self.ids.extend(keys)
        self._new_texts.extend(texts)
        self._sigs.append(sigs)
        self._bands.append(band_keys(sigs, self.rows_per_band))
        self._vectors.append(np.ascontiguousarray(vecs, dtype=np.float32))
        if self._ann is not None and len(self.ids) <= 4 * self._ann_trained_for:
            self._ann.add(vecs)
        elif len(self.ids) > c.ann_min_size:
            # first time over the size, or 4× past the size the lists were trained for: (re)train, so
            # that each query still scans ~nprobe/√n of the hub
            self._ann = self._build_ann(self.vectors())
            self._ann_trained_for = len(self.ids)

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
        if self._ann is not None:
            self._ann.nprobe = self.config.ann_nprobe
            d, idx = self._ann.search(vecs, 1)
        else:
            flat = faiss.IndexFlatIP(vecs.shape[1])
            flat.add(self.vectors())
            d, idx = flat.search(vecs, 1)
        return d[:, 0], idx[:, 0]

    def _build_ann(self, vecs: np.ndarray) -> faiss.Index:
        """IVF with 8-bit scalar quantization: ~4× smaller than float vectors, appendable without
        retraining; ~4·√n lists, trained on (a sample of) the vectors it starts with."""
        n, dim = vecs.shape
        nlist = int(min(65536, 4 * np.sqrt(n), max(1, n // 16)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        sample = vecs[np.random.default_rng(self.config.seed).permutation(n)[: nlist * 50]]
        index.train(sample)
        index.add(vecs)
        return index

    # -- persistence ---------------------------------------------------------------------------
    # chunks/ holds the source of truth in immutable, append-only pieces named by the range of kept
    # personas they cover (ids + texts, MinHash signatures, float32 embeddings), so a save writes only
    # what this run added, fsynced. The LSH and ANN indexes are derived from them and rewritten into a
    # new version folder (renamed into place, not fsynced: if a power cut ever leaves one unreadable,
    # :meth:`load` returns None and the hub is rebuilt). CURRENT names the live version.
    def save(self, directory: str | os.PathLike[str], extra: dict | None = None) -> None:
        """Write what changed since :meth:`load` (new chunks, then a new version folder, then ``CURRENT``)."""
        root = Path(directory)
        (root / "chunks").mkdir(parents=True, exist_ok=True)
        chunks = list(self._chunks)
        if len(self.ids) > self._persisted:
            name = f"{self._persisted:012d}-{len(self.ids):012d}"
            kept = pl.DataFrame({"persona_id": self.ids[self._persisted :], "persona": self._new_texts})
            atomic_write(root / "chunks" / f"kept-{name}.parquet", kept.write_parquet)
            atomic_write(
                root / "chunks" / f"sig-{name}.npy", lambda f: np.save(f, _tail(self._sigs, self._persisted))
            )
            atomic_write(
                root / "chunks" / f"band-{name}.npy",
                lambda f: np.save(f, _tail(self._bands, self._persisted)),
            )
            atomic_write(
                root / "chunks" / f"emb-{name}.npy",
                lambda f: np.save(f, _tail(self._vectors, self._persisted)),
            )
            chunks.append(name)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".v-"))
        try:
            if self._ann is not None:
                faiss.write_index(self._ann, str(tmp / "ann.faiss"))
            manifest = {
                "version": STATE_VERSION,
                "config": asdict(self.config),
                "embedder": self.embedder.model_name,
                "kept": len(self.ids),
                "ann_trained_for": self._ann_trained_for,
                "chunks": chunks,
                **(extra or {}),
            }
            atomic_write(tmp / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))
            final = root / f"v-{os.urandom(6).hex()}"
            os.rename(tmp, final)
            atomic_write(root / "CURRENT", lambda f: f.write(final.name.encode()))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in root.glob("v-*"):
            if old.name != final.name:
                shutil.rmtree(old, ignore_errors=True)
        self._chunks, self._persisted, self._new_texts = chunks, len(self.ids), []

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], config: DedupConfig, embedder: Embedder
    ) -> HubIndex | None:
        """The saved state, or None if there is none, it cannot be read, or it was made with another
        config or embedder (a state is only valid for the thresholds, permutations and model that built
        it). Signatures and embeddings are memory-mapped: only the rows a search touches are read."""
        manifest = cls.manifest(directory)
        if (
            manifest is None
            or manifest.get("version") != STATE_VERSION
            or manifest["config"] != asdict(config)
            or manifest["embedder"] != embedder.model_name
        ):
            return None
        root = Path(directory)
        chunk = root / "chunks"
        try:
            folder = root / (root / "CURRENT").read_text().strip()
            ids = [
                pid
                for c in manifest["chunks"]
                for pid in pl.read_parquet(chunk / f"kept-{c}.parquet", columns=["persona_id"])["persona_id"]
            ]
            ann = faiss.read_index(str(folder / "ann.faiss")) if (folder / "ann.faiss").exists() else None
            sigs = [np.load(chunk / f"sig-{c}.npy", mmap_mode="r") for c in manifest["chunks"]]
            bands = [np.load(chunk / f"band-{c}.npy", mmap_mode="r") for c in manifest["chunks"]]
            vectors = [np.load(chunk / f"emb-{c}.npy", mmap_mode="r") for c in manifest["chunks"]]
        except (OSError, RuntimeError, ValueError):
            return None
        state = cls(config, embedder, ids, sigs, bands, vectors, ann)
        state._chunks, state._persisted = list(manifest["chunks"]), len(state.ids)
        state._ann_trained_for = manifest.get("ann_trained_for", 0)
        return state

    @staticmethod
    def manifest(directory: str | os.PathLike[str]) -> dict | None:
        root = Path(directory)
        try:
            return json.loads((root / (root / "CURRENT").read_text().strip() / "manifest.json").read_text())
        except FileNotFoundError:
            return None


def signatures(tokens: list[list[str]], config: DedupConfig) -> np.ndarray:
    """MinHash signatures of token sets as a uint32 matrix (one rensa call, then one numpy copy)."""
    rows = RMinHash.digest_matrix_from_token_sets(
        tokens, num_perm=config.num_perm, seed=config.seed
    ).to_rows()
    flat = np.fromiter(itertools.chain.from_iterable(rows), np.uint32, count=len(rows) * config.num_perm)
    return flat.reshape(len(rows), config.num_perm)


def band_keys(sigs: np.ndarray, rows_per_band: int) -> np.ndarray:
    """One uint64 key per LSH band: a multiply-add hash of the band's signature rows, with the band
    number mixed in so that all bands can share one join column. Collisions only add candidates,
    and every candidate is verified."""
    n, num_perm = sigs.shape
    grouped = sigs.reshape(n, num_perm // rows_per_band, rows_per_band).astype(np.uint64)
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=rows_per_band, dtype=np.uint64) | np.uint64(
        1
    )
    with np.errstate(over="ignore"):
        keys = (grouped * mult).sum(axis=2, dtype=np.uint64)
        keys ^= np.arange(grouped.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return keys


def _tail(blocks: list[np.ndarray], start: int) -> np.ndarray:
    """Rows ``start:`` of the concatenation of ``blocks``, without reading the blocks before them."""
    parts, offset = [], 0
    for block in blocks:
        if offset + len(block) > start:
            parts.append(np.asarray(block[max(0, start - offset) :]))
        offset += len(block)
    return np.concatenate(parts)


def _gather(blocks: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows at sorted global ``index`` from row ``blocks`` (memory-mapped: only those rows are read)."""
    bounds = np.cumsum([0] + [len(b) for b in blocks])
    out = []
    for k, block in enumerate(blocks):
        lo, hi = np.searchsorted(index, [bounds[k], bounds[k + 1]])
        if hi > lo:
            out.append(np.asarray(block[index[lo:hi] - bounds[k]]))
    return np.concatenate(out)


def _best_match(m: RMinHash, candidates: list[int], pool) -> tuple[float, int]:
    """Highest Jaccard among ``candidates`` (in order; ties go to the first): (similarity, index)."""
    best, best_j = 0.0, -1
    for j in candidates:
        if (s := m.jaccard(pool[j])) > best:
            best, best_j = s, j
    return best, best_j


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
