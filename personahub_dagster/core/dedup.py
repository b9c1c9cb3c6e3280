"""Near-duplicate removal for personas (Persona Hub §3): MinHash first, then embedding similarity.

* MinHash over word 1-grams, 128 permutations, Jaccard ≥ 0.9 (rensa, a Rust MinHash; LSH banding
  picked for the threshold, every LSH candidate verified by estimated Jaccard).
* Embeddings (unit vectors) in a FAISS inner-product index; cosine ≥ 0.9 is a duplicate.

Duplicates are marked, never dropped: each row gets ``dup_of`` (the kept persona it repeats),
``dup_reason`` (``minhash`` | ``embedding``) and ``similarity``. Within a batch the earliest persona
in the given order wins, and :class:`Deduplicator` keeps its state, so feeding batches one after
another checks each new persona against everything already kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np
import polars as pl
from rensa import RMinHash, RMinHashLSH

from personahub_dagster.core.embedder import Embedder
from personahub_dagster.core.parsing import words


def lsh_rows_per_band(threshold: float, num_perm: int, min_recall: float = 0.995) -> int:
    """The widest band (fewest false candidates) that still catches a pair at ``threshold`` with
    probability ≥ ``min_recall``: P = 1 - (1 - t^r)^b, with b·r = num_perm."""
    best = 1
    for r in (d for d in range(1, num_perm + 1) if num_perm % d == 0):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= min_recall:
            best = r
    return best


@dataclass
class DedupConfig:
    minhash_threshold: float = 0.9
    num_perm: int = 128
    cosine_threshold: float = 0.9
    seed: int = 42
    block_size: int = 2048


@dataclass
class Deduplicator:
    """Stateful two-stage dedup; ``add`` marks a batch against all personas kept so far."""

    config: DedupConfig
    embedder: Embedder
    _keys: list[str] = field(default_factory=list)
    _minhashes: list[RMinHash] = field(default_factory=list)
    _lsh: RMinHashLSH | None = None
    _index: faiss.Index | None = None
    _index_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        c = self.config
        r = lsh_rows_per_band(c.minhash_threshold, c.num_perm)
        self._lsh = RMinHashLSH(threshold=c.minhash_threshold, num_perm=c.num_perm, num_bands=c.num_perm // r)

    def _minhash(self, text: str) -> RMinHash:
        mh = RMinHash(num_perm=self.config.num_perm, seed=self.config.seed)
        mh.update(words(text))
        return mh

    def add(self, keys: list[str], texts: list[str]) -> pl.DataFrame:
        """Marks for ``keys`` (in order): columns key, dup_of, dup_reason, similarity."""
        dup_of: list[str | None] = [None] * len(keys)
        reason: list[str | None] = [None] * len(keys)
        sim: list[float | None] = [None] * len(keys)

        survivors = []
        for i, (key, text) in enumerate(zip(keys, texts, strict=True)):
            mh = self._minhash(text)
            best, best_j = 0.0, -1
            for j in self._lsh.query(mh):
                s = mh.jaccard(self._minhashes[j])
                if s > best:
                    best, best_j = s, j
            if best >= self.config.minhash_threshold:
                dup_of[i], reason[i], sim[i] = self._keys[best_j], "minhash", round(best, 4)
                continue
            self._lsh.insert(len(self._keys), mh)
            self._keys.append(key)
            self._minhashes.append(mh)
            survivors.append(i)

        for start in range(0, len(survivors), self.config.block_size):
            block = survivors[start : start + self.config.block_size]
            self._embed_block(block, keys, texts, dup_of, reason, sim)

        return pl.DataFrame(
            {"key": keys, "dup_of": dup_of, "dup_reason": reason, "similarity": sim},
            schema={"key": pl.Utf8, "dup_of": pl.Utf8, "dup_reason": pl.Utf8, "similarity": pl.Float64},
        )

    def _embed_block(self, block: list[int], keys, texts, dup_of, reason, sim) -> None:
        """Check a block against the index, then against its own earlier members, then index the kept."""
        vecs = self.embedder.encode([texts[i] for i in block])
        if self._index is None:
            self._index = faiss.IndexFlatIP(vecs.shape[1])
        t = self.config.cosine_threshold
        hub_sim = np.full(len(block), -1.0, dtype=np.float32)
        hub_idx = np.full(len(block), -1, dtype=np.int64)
        if self._index.ntotal:
            d, idx = self._index.search(vecs, 1)
            hub_sim, hub_idx = d[:, 0], idx[:, 0]
        within = vecs @ vecs.T
        kept: list[int] = []
        for b, i in enumerate(block):
            best, best_key = float(hub_sim[b]), (self._index_keys[hub_idx[b]] if hub_idx[b] >= 0 else None)
            if kept:
                k = int(np.argmax(within[b, kept]))
                if within[b, kept[k]] > best:
                    best, best_key = float(within[b, kept[k]]), keys[block[kept[k]]]
            if best_key is not None and best >= t:
                dup_of[i], reason[i], sim[i] = best_key, "embedding", round(best, 4)
            else:
                kept.append(b)
        if kept:
            self._index.add(vecs[kept])
            self._index_keys.extend(keys[block[b]] for b in kept)


def dedup_frame(
    df: pl.DataFrame,
    embedder: Embedder,
    config: DedupConfig | None = None,
    text_col: str = "persona",
    key_col: str = "persona_id",
) -> pl.DataFrame:
    """``df`` (in its given order) with ``dup_of``, ``dup_reason`` and ``similarity`` columns added."""
    marks = Deduplicator(config or DedupConfig(), embedder).add(df[key_col].to_list(), df[text_col].to_list())
    return df.with_columns(marks.drop("key"))
