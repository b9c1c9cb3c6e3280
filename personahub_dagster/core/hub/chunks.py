"""The hub state's files: append-only chunks of kept ids (Parquet) and of their vectors, signatures
and band keys (``.npy``, memory-mapped locally), read one chunk at a time."""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from personahub_dagster.core.storage.store import Store


def chunk_rows(name: str) -> int:
    """Kept personas in a saved chunk, from its name (``<first row>-<end row>-<tag>``)."""
    first, end, _ = name.split("-", 2)
    return int(end) - int(first)


def chunk_of(key: str) -> str:
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


def npy_bytes(array: np.ndarray):
    return lambda fh: np.save(fh, array)


def chunk_source(store: Store, key: str):
    """A local path (read in place) or the object's bytes."""
    path = store.local_path(key)
    return path if path is not None else io.BytesIO(store.get(key))


def load_kept(store: Store, chunk: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A saved chunk's kept personas (``persona_id``, ``persona``), or the ``columns`` asked for."""
    return pl.read_parquet(chunk_source(store, f"chunks/kept-{chunk}.parquet"), columns=columns)


def load_npy(store: Store, key: str) -> np.ndarray:
    path = store.local_path(key)
    return np.load(path, mmap_mode="r") if path is not None else np.load(io.BytesIO(store.get(key)))


def rows_from(blocks: list[np.ndarray], start: int) -> np.ndarray:
    """Rows ``start:`` of the concatenation of ``blocks``, without reading the blocks before them."""
    parts, offset = [], 0
    for block in blocks:
        if offset + len(block) > start:
            parts.append(np.asarray(block[max(0, start - offset) :]))
        offset += len(block)
    return np.concatenate(parts)


def gather_rows(blocks: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Rows at sorted global ``index`` from row ``blocks`` (memory-mapped: only those rows are read)."""
    bounds = np.cumsum([0] + [len(b) for b in blocks])
    out = []
    for k, block in enumerate(blocks):
        lo, hi = np.searchsorted(index, [bounds[k], bounds[k + 1]])
        if hi > lo:
            out.append(np.asarray(block[index[lo:hi] - bounds[k]]))
    return np.concatenate(out)


def kept_vectors(store: Store, chunks: list[str], ranges: list[list[int]]) -> pl.DataFrame:
    """The kept personas of the state's rows in ``ranges`` (``[first, end)`` pairs) with their stored
    embeddings (``persona_id``, ``vector``): only the chunks that hold those rows are opened, and from
    a local lake only those rows of them are read — a day's vectors cost O(day), whatever the hub's size."""
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    for chunk in chunks:
        first, end, _ = chunk.split("-", 2)
        lo, hi = int(first), int(end)
        for start, stop in ranges:
            a, b = max(start, lo), min(stop, hi)
            if a >= b:
                continue
            kept = load_kept(store, chunk, ["persona_id"])["persona_id"]
            ids.extend(kept[a - lo : b - lo].to_list())
            vectors.append(np.asarray(load_npy(store, f"chunks/emb-{chunk}.npy")[a - lo : b - lo]))
    matrix = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
    return pl.DataFrame({"persona_id": pl.Series(ids, dtype=pl.Utf8), "vector": matrix})
