"""The hub's saved state in the lake: a manifest per version, a ``CURRENT`` pointer swapped by compare-
and-swap (two writers cannot both win), and the chunks a version uses; loading checks that the state was
made with the same settings and embedder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Self

import faiss
import numpy as np
import polars as pl

from personahub_dagster.core.hub import minhash
from personahub_dagster.core.hub.chunks import (
    KeptIds,
    chunk_of,
    chunk_rows,
    load_kept,
    load_npy,
    npy_bytes,
    rows_from,
)
from personahub_dagster.core.hub.config import DedupConfig, StateError
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.shards import HubShards
from personahub_dagster.core.storage.store import ConcurrentUpdate, Store, as_store

STATE_VERSION = 3  # 3: signatures from core.minhash (2 was rensa's); an older state is rebuilt
LOADED = object()  # save(): compare CURRENT with the version this state was loaded from


class SavedState:
    """Saving and loading :class:`~personahub_dagster.core.hub.index.HubIndex` (a base of it)."""

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
        expected: str | object | None = LOADED,
        files: Mapping[str, bytes | Callable] | None = None,
    ) -> None:
        """Write what changed since :meth:`load` (new chunks, a new version folder with ``files`` beside
        the manifest), then move ``CURRENT`` to it — only if ``CURRENT`` is still what it was when this
        state was loaded (or ``expected``); :class:`ConcurrentUpdate` otherwise, with nothing of this
        save left referenced."""
        expected = self._token if expected is LOADED else expected
        store = as_store(store)
        chunks, written = list(self._chunks), []
        if len(self.ids) > self._persisted:
            name = f"{self._persisted:012d}-{len(self.ids):012d}-{os.urandom(3).hex()}"
            kept = pl.DataFrame({"persona_id": self.ids[self._persisted :], "persona": self._new_texts})
            parts = {
                f"chunks/kept-{name}.parquet": kept.write_parquet,
                f"chunks/sig-{name}.npy": npy_bytes(rows_from(self._sigs, self._persisted - self._offset)),
                f"chunks/band-{name}.npy": npy_bytes(rows_from(self._bands, self._persisted - self._offset)),
                f"chunks/emb-{name}.npy": npy_bytes(rows_from(self._vectors, self._persisted - self._offset)),
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
        store.delete([k for k in store.list("chunks") if chunk_of(k) not in used])

    @classmethod
    def load(
        cls,
        store: Store | str | os.PathLike[str],
        config: DedupConfig,
        embedder: Embedder,
        shards: Callable[[Store, list[str], list[int], DedupConfig, int], HubShards] | None = None,
    ) -> Self | None:
        """The saved state, or None if there is none or it was made with another config, embedder or
        MinHash algorithm (a state is only valid for the thresholds, permutations, hashing and model
        that built it; :func:`~.growth.grow_hub` refuses such a state rather than starting over). A state
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
