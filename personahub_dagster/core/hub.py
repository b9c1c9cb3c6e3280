"""Growing the deduplicated hub partition by partition, with its dedup state kept in the lake.

The hub's marks for a partition depend only on the partitions before it (in name order, which is date
order for daily partitions). So the state records which partitions it holds, with a digest of each
one's persona ids: partitions already in the state keep their marks and cost nothing; new ones are
checked against the whole hub; if an earlier partition changed (its personas were re-made), the state
no longer describes the hub and it is rebuilt from scratch — the same marks growth would give.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from personahub_dagster.core.dedup import DedupConfig, HubIndex
from personahub_dagster.core.embedder import Embedder
from personahub_dagster.core.hub_ray import RayEngine
from personahub_dagster.core.ids import digest
from personahub_dagster.core.schemas import SCHEMAS
from personahub_dagster.core.storage import Store, as_store

HUB_COLUMNS = list(SCHEMAS["hub"])


@dataclass
class HubGrowth:
    hub: dict[str, pl.DataFrame]  # partition → its hub rows (only the partitions marked in this call)
    reused: list[str]  # partitions whose marks were already in the hub
    rebuilt: bool  # True when the saved state could not be used
    kept_total: int
    engine: str = "local"  # where the saved state was searched: local | ray


def dedup_order(personas: pl.DataFrame) -> pl.DataFrame:
    """The order in which "earliest wins": partition, then hop (Text-to-Persona first), then id."""
    return personas.sort("partition", "hop", "method", "persona_id")


ENGINES = ("local", "ray", "auto")


@dataclass(frozen=True)
class Engine:
    """Where the hub's saved state is searched: ``local`` (this process), ``ray`` (shard actors on a
    Ray cluster, :mod:`.hub_ray`), or ``auto`` — Ray once the saved hub holds ``ray_min_hub_size``
    kept personas. A new or rebuilt hub always starts in this process (there is nothing to shard)."""

    kind: str = "local"
    ray: RayEngine = field(default_factory=RayEngine)
    ray_min_hub_size: int = 5_000_000

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"engine {self.kind!r}: use one of {ENGINES}")

    def uses_ray(self, kept: int) -> bool:
        return self.kind == "ray" or (self.kind == "auto" and kept >= self.ray_min_hub_size)


def grow_hub(
    personas: pl.DataFrame,
    store: Store | str | os.PathLike[str],
    embedder: Embedder,
    config: DedupConfig,
    marked_partitions: set[str],
    publish: Callable[[dict[str, pl.DataFrame]], object] | None = None,
    engine: Engine = Engine(),
) -> HubGrowth:
    """Mark every partition of ``personas`` that the saved state does not hold yet.

    ``marked_partitions`` are partitions whose hub rows already exist in the lake; a partition in the
    state is only reused if its rows exist too (a lake restored without its hub table is rebuilt).
    ``publish`` writes the new marks (partition → hub rows) *before* the state is saved, so a saved
    state never names a partition whose rows are not in the lake — another run that reads the state
    can trust it at once. The state in ``store`` is replaced only if no other run replaced it
    meanwhile (:class:`~personahub_dagster.core.storage.ConcurrentUpdate` otherwise: grow again; the
    rows published are the same marks the winner's state gives, as marks depend only on the
    partitions before them). ``engine`` says where the saved state is searched (the marks are the
    same either way).
    """
    personas, store = dedup_order(personas), as_store(store)
    parts = sorted(personas["partition"].unique().to_list())
    by_part = {p: personas.filter(pl.col("partition") == p) for p in parts}
    fingerprints = {p: digest(by_part[p]["persona_id"].to_list())[:16] for p in parts}

    manifest, token = HubIndex.current(store)
    manifest = manifest or {}
    recorded = [(r["name"], r["digest"]) for r in manifest.get("partitions", [])]
    wanted = [(p, fingerprints[p]) for p in parts]
    if wanted and recorded[: len(wanted)] == wanted and set(parts) <= marked_partitions:
        # A re-run of an earlier day: the state already holds it (and later days); nothing to do,
        # and the later days' state is left as it is.
        return HubGrowth({}, parts, rebuilt=False, kept_total=int(manifest.get("kept", 0)))
    prefix_ok = recorded == [(p, fingerprints[p]) for p in parts[: len(recorded)]]
    shards = engine.ray.shards if engine.uses_ray(int(manifest.get("kept", 0))) else None
    state = HubIndex.load(store, config, embedder, shards) if prefix_ok and recorded else None
    if state is None or not {p for p, _ in recorded} <= marked_partitions:
        state, recorded = HubIndex(config, embedder), []
    reused = [p for p, _ in recorded]

    hub: dict[str, pl.DataFrame] = {}
    try:
        for p in parts[len(recorded) :]:
            rows = by_part[p]
            marks = state.add(rows["persona_id"].to_list(), rows["persona"].to_list())
            hub[p] = rows.with_columns(marks.drop("key")).select(HUB_COLUMNS)
    finally:
        if state.remote is not None:
            state.remote.close()
    if hub or not recorded:
        if publish is not None:
            publish(hub)
        extra = {"partitions": [{"name": p, "digest": fingerprints[p]} for p in parts]}
        state.save(store, extra, expected=token)
    engine_used = "ray" if state.remote is not None else "local"
    return HubGrowth(hub, reused, not reused and bool(manifest), len(state), engine_used)
