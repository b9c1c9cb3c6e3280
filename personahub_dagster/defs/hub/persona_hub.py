"""``persona_hub``: the day's personas marked against the whole hub (MinHash, then embeddings) and
added to its saved state, in one process or sharded on Ray."""

from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.hub.config import DedupConfig, StateError
from personahub_dagster.core.hub.growth import Engine, grow_hub
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.on_ray import RayEngine
from personahub_dagster.core.hub.sample import DEFAULT_SIZE
from personahub_dagster.core.storage.store import ConcurrentUpdate
from personahub_dagster.defs.evaluation import checks
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.llm.pools import HUB_POOL
from personahub_dagster.defs.metadata import (
    histogram,
    lake_metadata,
    md_table,
    table_definition,
)
from personahub_dagster.defs.partitions import partition_of, pipeline_partitions
from personahub_dagster.defs.resources import (
    EmbedderResource,
    LakeResource,
    RayClusterResource,
)
from personahub_dagster.defs.stages.personas import expanded_personas

HUB_COMMIT_ATTEMPTS = 5


class PersonaHubConfig(dg.Config):
    minhash_threshold: float = Field(default=0.9, description="Jaccard of word 1-grams (the paper: 0.9)")
    num_perm: int = 128
    cosine_threshold: float = Field(default=0.9, description="Embedding cosine (0.5 for a very diverse hub)")
    ann_min_size: int = Field(default=50_000, description="Kept personas above which search is approximate")
    ann_target_recall: float = Field(
        default=0.99, description="Share of planted near-duplicates the approximate search must find"
    )
    ann_nprobe: int | None = Field(
        default=None, description="IVF lists probed per query; null: chosen for ann_target_recall"
    )
    seed: int = Field(default=42, description="MinHash permutations' seed (part of the hub's state)")
    block_size: int = Field(default=4096, ge=1, description="Personas embedded and searched per block")
    engine: Literal["local", "ray", "auto"] = Field(
        default="local",
        description="Where the saved hub is searched: here, on a Ray cluster, or Ray from ray_min_hub_size",
    )
    ray_shard_rows: int = Field(
        default=2_000_000, ge=1, description="Kept personas one Ray shard actor holds (2M: ~3 GB of vectors)"
    )
    ray_embed_workers: int = Field(default=0, ge=0, description="Embedder actors for the day (0: embed here)")
    ray_shard_cpus: float = Field(default=0.5, gt=0, description="CPUs each Ray shard actor reserves")
    ray_min_hub_size: int = Field(default=5_000_000, ge=0, description="engine auto: kept personas for Ray")
    sample_size: int = Field(
        default=DEFAULT_SIZE,
        ge=2,
        description="Kept personas in the sample for hub statistics",
    )
    checks: CheckThresholds = CheckThresholds()

    def dedup(self) -> DedupConfig:
        return DedupConfig(**self.model_dump(include=set(DedupConfig.__dataclass_fields__)))

    def hub_engine(self) -> Engine:
        ray = RayEngine(None, self.ray_shard_rows, self.ray_embed_workers, shard_cpus=self.ray_shard_cpus)
        return Engine(self.engine, ray, self.ray_min_hub_size)


@dg.asset(
    metadata=table_definition("hub"),
    deps=[expanded_personas],
    group_name="hub",
    kinds={"deltalake", "faiss"},
    partitions_def=pipeline_partitions,
    pool=HUB_POOL,
    check_specs=checks.specs("persona_hub", "dedup_ratio", "not_empty"),
)
def persona_hub(
    context: dg.AssetExecutionContext,
    config: PersonaHubConfig,
    lake: LakeResource,
    embedder: EmbedderResource,
    ray_cluster: RayClusterResource,
) -> dg.MaterializeResult:
    """All personas, near-duplicates marked (MinHash, then embedding cosine with FAISS), grown
    incrementally: the day's personas are checked against every persona the hub already keeps (kept
    in ``hub_state``, never re-hashed or re-embedded), reading only the day and the state; published
    marks never change — a day that arrives late is marked against the hub as it stands. With
    ``engine: ray`` (or ``auto`` past ``ray_min_hub_size``) the saved hub is searched by shard actors
    on ``ray_cluster``; the marks are the same."""
    lk, day = lake.lake(context), partition_of(context)
    # One run at a time grows the hub (the pool; and a file lock between processes of one machine).
    # Where neither reaches — runs on several machines over an object store — the state's
    # compare-and-swap commit decides, and the run that lost grows again from the winner's state.
    store = lk.files.child("hub_state")
    engine = config.hub_engine()
    if engine.uses_ray(int((HubIndex.manifest(store) or {}).get("kept", 0))):
        ray_cluster.connect(context)

    def publish(hub: dict[str, pl.DataFrame]) -> None:
        for partition, rows in hub.items():
            lk.write("hub", rows, producer="persona_hub", partition=partition)
            context.log.info(f"hub: partition {partition}: {rows.height} personas marked")

    with lk.lock("hub", on_wait=lambda: context.log.info("another run is growing the hub; waiting")):
        for attempt in range(1, HUB_COMMIT_ATTEMPTS + 1):
            personas = lk.read("personas", partitions=[day])
            published = lk.read("hub", partitions=[day])
            try:
                growth = grow_hub(
                    personas,
                    store,
                    embedder.embedder(),
                    config.dedup(),
                    published,
                    publish,
                    engine,
                    config.sample_size,
                )
                break
            except StateError as exc:
                raise dg.Failure(str(exc)) from exc
            except ConcurrentUpdate:
                if attempt == HUB_COMMIT_ATTEMPTS:
                    raise
                context.log.info(f"another run grew the hub meanwhile; growing again (attempt {attempt + 1})")
    if growth.late:
        context.log.warning(
            f"{day} arrived after a later day: its personas were marked against the whole hub as it "
            "stands (arrival order), and no published mark changed"
        )
    mine = lk.read("hub", partitions=[day])
    dups = mine.filter(pl.col("dup_of").is_not_null())
    ratio = dups.height / mine.height if mine.height else 0.0
    manifest = HubIndex.manifest(store) or {}
    total = sum(int(p.get("personas", 0)) for p in manifest.get("partitions", []))
    return dg.MaterializeResult(
        metadata={
            **lake_metadata(lk, "hub", mine.height),
            "partitions_marked": dg.MetadataValue.json(sorted(growth.hub)),
            "partitions_reused": dg.MetadataValue.json(growth.reused),
            "late_arrival": bool(growth.late),
            "personas_marked": growth.new_personas,
            "state_rebuilds": int(manifest.get("rebuilds", 0)),
            "engine": growth.engine,
            "personas": mine.height,
            "duplicates": dups.height,
            "duplicates_by_reason": dg.MetadataValue.json(
                dict(dups.group_by("dup_reason").len().iter_rows())
            ),
            "dedup_ratio": round(ratio, 4),
            "hub_personas": total,
            "hub_kept": growth.kept_total,
            "nearest_similarity": histogram(
                mine["nearest_similarity"].to_list(), "cosine to the nearest kept persona", "cosine"
            ),
            "preview": md_table(dups if dups.height else mine, ["persona", "dup_reason", "similarity"]),
        },
        check_results=[
            checks.dedup_ratio(ratio, mine.height, config.checks),
            checks.not_empty(mine.height, config.checks),
        ],
    )
