"""A sample of the hub's kept personas, of fixed size, kept up to date as the hub grows.

Statistics of the whole hub (nearest-neighbour similarity, clusters, the paper's similarity bands)
would cost O(hub) a night if computed from the hub itself — re-reading and re-embedding every persona
ever kept. They are computed from this sample instead: the ``size`` kept personas with the smallest
ids, with their stored embeddings. Ids are content hashes, so "smallest ids" is a uniform random
sample that needs no seed and no state beyond itself, and it is the same sample whatever order the
personas arrived in. Merging a night's kept personas into it costs O(size + day). Up to ``size`` kept
personas it *is* the hub, so the statistics are exact there.

The sample is saved with each version of the hub's state (:meth:`~.index.HubIndex.save`), so a reader
sees the sample of the same version as the marks.
"""

from __future__ import annotations

import io

import numpy as np
import polars as pl

from personahub_dagster.core.storage.store import Store

SAMPLE_FILE = "sample.parquet"
DEFAULT_SIZE = 10_000  # 384 floats each: ~15 MB; exact all-pairs statistics over it take about a second


def sample_frame(
    ids: list[str], texts: list[str], sources: list[str | None], vectors: np.ndarray
) -> pl.DataFrame:
    """Kept personas as sample rows (``vector`` a fixed-size float32 array column)."""
    return pl.DataFrame(
        {
            "persona_id": pl.Series(ids, dtype=pl.Utf8),
            "persona": pl.Series(texts, dtype=pl.Utf8),
            "source_text_id": pl.Series(sources, dtype=pl.Utf8),
            "vector": np.ascontiguousarray(vectors, dtype=np.float32),
        }
    )


def merge_sample(previous: pl.DataFrame | None, new: pl.DataFrame, size: int) -> pl.DataFrame:
    """The ``size`` smallest ids of the previous sample and the newly kept personas (bottom-k)."""
    frames = [f for f in (previous, new) if f is not None and not f.is_empty()]
    if not frames:
        return new
    both = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    return both.unique("persona_id", keep="first").sort("persona_id").head(size)


def sample_bytes(sample: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    sample.write_parquet(buffer, compression="zstd")
    return buffer.getvalue()


def read_sample(store: Store, manifest: dict | None) -> pl.DataFrame | None:
    """The sample saved with the state version ``manifest`` describes; None for a state without one
    (saved before samples were kept: it starts with the next night's growth)."""
    if not manifest or not manifest.get("sample"):
        return None
    return pl.read_parquet(io.BytesIO(store.get(f"{manifest['_folder']}/{SAMPLE_FILE}")))


def sample_from_chunks(store: Store, chunks: list[str], size: int) -> pl.DataFrame:
    """The sample of a state saved before samples were kept, from its chunks: the ids of every chunk
    (read once, at the first growth after an upgrade), then the chosen rows' vectors alone."""
    from personahub_dagster.core.hub.chunks import load_kept, load_npy

    kept = [load_kept(store, c) for c in chunks]
    frame = (
        pl.concat(
            [
                k.with_columns(pl.lit(i).alias("chunk"), pl.int_range(pl.len()).alias("row"))
                for i, k in enumerate(kept)
            ]
        )
        if kept
        else pl.DataFrame()
    )
    if frame.is_empty():
        return sample_frame([], [], [], np.zeros((0, 0), np.float32))
    chosen = frame.sort("persona_id").head(size)
    vectors = np.concatenate(
        [
            np.asarray(load_npy(store, f"chunks/emb-{chunks[c]}.npy")[rows["row"].to_numpy()])
            for (c,), rows in chosen.group_by("chunk", maintain_order=True)
        ]
    )
    order = pl.concat([rows for _, rows in chosen.group_by("chunk", maintain_order=True)])
    return sample_frame(
        order["persona_id"].to_list(), order["persona"].to_list(), [None] * order.height, vectors
    )


def hub_sample(lake) -> pl.DataFrame | None:
    """The sample of the hub's current saved state in ``lake`` (None before the hub's first growth)."""
    from personahub_dagster.core.hub.index import HubIndex

    store = lake.files.child("hub_state")
    manifest = HubIndex.manifest(store)
    if manifest is None:
        return None
    sample = read_sample(store, manifest)
    return sample if sample is not None else sample_from_chunks(store, manifest["chunks"], DEFAULT_SIZE)


def sample_vectors(sample: pl.DataFrame) -> np.ndarray:
    if sample.is_empty():
        return np.zeros((0, 0), np.float32)
    return np.ascontiguousarray(sample["vector"].to_numpy(), dtype=np.float32)
