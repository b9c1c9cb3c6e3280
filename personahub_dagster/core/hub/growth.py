"""Growing the deduplicated hub a partition at a time, with its dedup state kept in the lake.

A night reads its own partition and the state's manifest, never the days before it:

* **Marks are decided in the order partitions enter the hub.** A new partition is checked against
  every persona the hub already keeps — including days *after* it, when it arrives late (a shard that
  landed late, a backfill of an earlier date). So a late day's persona that repeats a later day's is
  the one marked duplicate, and no mark already published changes: datasets generated from the later
  days stay true to their marks. This differs from date-order "earliest wins" only for late days;
  :func:`rebuild_hub` re-decides every day in date order, on request (``personahub hub rebuild``),
  never automatically.
* **A partition the state already holds** keeps its published marks; personas new to it (its
  personas were re-made) are marked against the hub as an arrival would be; a re-run with the same
  personas costs a read of the day and nothing else.
* **The state is either usable or an error.** Another config or model than the one that built it,
  a state naming a day whose marks are not in the lake, or a read that keeps failing stops the step
  with a message saying what to run; nothing here rebuilds the hub from scratch on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import polars as pl

from personahub_dagster.core.hub import minhash
from personahub_dagster.core.hub.config import DedupConfig, StateError
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.on_ray import RayEngine
from personahub_dagster.core.hub.sample import (
    DEFAULT_SIZE,
    SAMPLE_FILE,
    merge_sample,
    read_sample,
    sample_bytes,
    sample_frame,
    sample_from_chunks,
)
from personahub_dagster.core.hub.state import STATE_VERSION
from personahub_dagster.core.lake.schemas import SCHEMAS
from personahub_dagster.core.storage.store import Store, as_store

HUB_COLUMNS = list(SCHEMAS["hub"])
REBUILD_HINT = "`personahub hub rebuild` re-marks every day in date order from the lake's personas"


@dataclass
class HubGrowth:
    hub: dict[str, pl.DataFrame]  # partition → its hub rows (only the partitions marked in this call)
    reused: list[str]  # partitions whose marks were already in the hub
    kept_total: int
    engine: str = "local"  # where the saved state was searched: local | ray
    late: list[str] = field(default_factory=list)  # partitions marked after a later date was in the hub
    new_personas: int = 0  # personas marked against the hub in this call


def dedup_order(personas: pl.DataFrame) -> pl.DataFrame:
    """The order in which "earliest wins" within a partition: hop (Text-to-Persona first), then id;
    the hub's own columns a frame of personas may lack (``locale`` before it was recorded) as nulls."""
    missing = [pl.lit(None, SCHEMAS["hub"][c]).alias(c) for c in ("locale",) if c not in personas.columns]
    return personas.with_columns(missing).sort("partition", "hop", "method", "persona_id")


ENGINES = ("local", "ray", "auto")


@dataclass(frozen=True)
class Engine:
    """Where the hub's saved state is searched: ``local`` (this process), ``ray`` (shard actors on a
    Ray cluster, :mod:`.on_ray`), or ``auto`` — Ray once the saved hub holds ``ray_min_hub_size``
    kept personas. A new hub always starts in this process (there is nothing to shard)."""

    kind: str = "local"
    ray: RayEngine = field(default_factory=RayEngine)
    ray_min_hub_size: int = 5_000_000

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"engine {self.kind!r}: use one of {ENGINES}")

    def uses_ray(self, kept: int) -> bool:
        return self.kind == "ray" or (self.kind == "auto" and kept >= self.ray_min_hub_size)


def check_compatible(manifest: dict, config: DedupConfig, embedder: Embedder) -> None:
    """Refuse, naming the difference, a state built with other thresholds, permutations, hashing or
    model: its marks and vectors mean something else, and silently starting over would re-mark — and
    re-pay the embedding of — every persona ever kept."""
    built = {
        "state version": manifest.get("version"),
        "MinHash algorithm": manifest.get("minhash"),
        "embedder": manifest.get("embedder"),
        **{k: v for k, v in (manifest.get("config") or {}).items()},
    }
    wanted = {
        "state version": STATE_VERSION,
        "MinHash algorithm": minhash.ALGORITHM,
        "embedder": embedder.model_name,
        **asdict(config),
    }
    diff = [f"{k} {built.get(k)!r} (now {v!r})" for k, v in wanted.items() if built.get(k) != v]
    if diff:
        raise StateError(
            f"the hub's saved state was built with {', '.join(diff)}; keep the settings it was built "
            f"with, or {REBUILD_HINT} with the new ones"
        )


def grow_hub(
    personas: pl.DataFrame,
    store: Store | str | os.PathLike[str],
    embedder: Embedder,
    config: DedupConfig,
    published: pl.DataFrame | None = None,
    publish: Callable[[dict[str, pl.DataFrame]], object] | None = None,
    engine: Engine = Engine(),
    sample_size: int = DEFAULT_SIZE,
) -> HubGrowth:
    """Mark ``personas`` (one partition, or a few, each taken as one arrival in name order) against
    the hub's saved state in ``store`` and save the grown state.

    ``published`` holds the hub rows already in the lake for these partitions (the day's own rows —
    nothing of other days is read). ``publish`` writes the new marks (partition → hub rows) *before*
    the state is saved, so a saved state never names a partition whose rows are not in the lake.
    The state in ``store`` is replaced only if no other run replaced it meanwhile
    (:class:`~personahub_dagster.core.storage.store.ConcurrentUpdate` otherwise: grow again from the
    winner's state). ``engine`` says where the saved state is searched (the marks are the same).
    ``sample_size``: the hub sample's size (:mod:`.sample`).
    """
    personas, store = dedup_order(personas), as_store(store)
    published = published if published is not None else pl.DataFrame(schema=SCHEMAS["hub"])
    parts = sorted(personas["partition"].unique().to_list())
    manifest, token = HubIndex.current(store)
    if manifest is not None:
        check_compatible(manifest, config, embedder)
    recorded = {  # in arrival order (a state saved before arrivals were recorded: its list order)
        r["name"]: {"arrival": i, **r} for i, r in enumerate((manifest or {}).get("partitions", []))
    }
    newest = max(recorded, default=None)

    todo: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}  # partition → (to mark, marks kept)
    reused: list[str] = []
    for p in parts:
        rows = personas.filter(pl.col("partition") == p)
        if p not in recorded:  # a new partition, or one whose growth never saved: mark all of it
            todo[p] = (rows, published.clear())
            continue
        mine = published.filter(pl.col("partition") == p)
        if mine.is_empty() and rows.height:
            raise StateError(
                f"the hub's saved state holds partition {p}, but the lake has no hub rows for it (a lake "
                f"restored without its hub table?); {REBUILD_HINT}"
            )
        keep = mine.join(rows.select("persona_id"), on="persona_id", how="semi")
        fresh = rows.join(mine.select("persona_id"), on="persona_id", how="anti")
        if fresh.is_empty() and keep.height == mine.height:
            reused.append(p)
        else:  # re-made personas: the ones it still has keep their marks, the new ones are marked
            todo[p] = (fresh, keep)
    if not todo:
        return HubGrowth({}, reused, int((manifest or {}).get("kept", 0)))

    shards = engine.ray.shards if manifest and engine.uses_ray(int(manifest.get("kept", 0))) else None
    state = HubIndex.load(store, config, embedder, shards) if manifest else None
    state = state or HubIndex(config, embedder)
    hub: dict[str, pl.DataFrame] = {}
    entries = dict(recorded)
    try:
        for p, (rows, keep) in todo.items():
            first = len(state)
            marks = state.add(rows["persona_id"].to_list(), rows["persona"].to_list())
            marked = rows.with_columns(marks.drop("key")).select(HUB_COLUMNS)
            hub[p] = pl.concat([keep.select(HUB_COLUMNS), marked]).sort("persona_id")
            before = recorded.get(p) or {}
            kept = [*before.get("kept_rows", []), [first, len(state)]]
            entries[p] = _entry(p, hub[p].height, before.get("arrival", len(entries)), kept)
    finally:
        if state.remote is not None:
            state.remote.close()
    new_rows = pl.concat([rows for rows, _ in todo.values()])
    if publish is not None:
        publish(hub)
    _save(state, store, manifest, entries, token, new_rows, sample_size)
    engine_used = "ray" if state.remote is not None else "local"
    late = [p for p in todo if p not in recorded and newest is not None and p < newest]
    return HubGrowth(hub, reused, len(state), engine_used, late, new_rows.height)


def rebuild_hub(
    personas: pl.DataFrame,
    store: Store | str | os.PathLike[str],
    embedder: Embedder,
    config: DedupConfig,
    publish: Callable[[dict[str, pl.DataFrame]], object] | None = None,
    sample_size: int = DEFAULT_SIZE,
) -> HubGrowth:
    """Re-decide every mark in date order ("earliest wins" by date, late arrivals included) from
    ``personas`` — all of them, in one process: the one step that reads the whole history, run only
    on request. Published marks change where a late day had been judged in arrival order; the new
    state replaces the old (compare-and-swap) and counts the rebuild in its manifest."""
    personas, store = dedup_order(personas), as_store(store)
    manifest, token = HubIndex.current(store)
    state = HubIndex(config, embedder)
    hub: dict[str, pl.DataFrame] = {}
    entries: dict[str, dict] = {}
    for p in sorted(personas["partition"].unique().to_list()):
        rows = personas.filter(pl.col("partition") == p)
        first = len(state)
        marks = state.add(rows["persona_id"].to_list(), rows["persona"].to_list())
        hub[p] = rows.with_columns(marks.drop("key")).select(HUB_COLUMNS)
        entries[p] = _entry(p, rows.height, len(entries), [[first, len(state)]])
    if publish is not None:
        publish(hub)
    _save(state, store, None, entries, token, personas, sample_size, rebuilds(manifest) + 1)
    state.delete_unused_chunks(store)
    return HubGrowth(hub, [], len(state))


def rebuilds(manifest: dict | None) -> int:
    """How often the hub was rebuilt on request (``personahub hub rebuild``)."""
    return int((manifest or {}).get("rebuilds", 0))


def _entry(partition: str, personas: int, arrival: int, kept_rows: list[list[int]]) -> dict:
    """A partition as the manifest records it: its name, personas, when it entered the hub, and the
    ranges of the state's kept rows its personas took (where their stored vectors are:
    :func:`.chunks.kept_vectors`)."""
    return {"name": partition, "personas": personas, "arrival": arrival, "kept_rows": kept_rows}


def _save(
    state: HubIndex,
    store: Store,
    manifest: dict | None,
    entries: dict[str, dict],
    token: str | None,
    rows: pl.DataFrame,
    sample_size: int,
    rebuilt: int | None = None,
) -> None:
    """Save the grown state with the partitions it holds (in arrival order) and the hub sample merged
    with the personas kept since the load — O(sample + day), whatever the hub's size."""
    ids, texts, vectors = state.unsaved()
    sources = dict(zip(rows["persona_id"], rows["source_text_id"], strict=True)) if ids else {}
    new = sample_frame(ids, texts, [sources.get(i) for i in ids], vectors)
    previous = read_sample(store, manifest)
    if previous is None and manifest and manifest.get("chunks"):  # a state saved before samples
        previous = sample_from_chunks(store, manifest["chunks"], sample_size)
    sample = merge_sample(previous, new, sample_size)
    state.save(
        store,
        {
            "partitions": sorted(entries.values(), key=lambda e: e["arrival"]),
            "sample": {"size": sample_size, "rows": sample.height},
            "rebuilds": rebuilds(manifest) if rebuilt is None else rebuilt,
        },
        expected=token,
        files={SAMPLE_FILE: sample_bytes(sample)},
    )
