"""The pipeline's assets. Each is a thin shell: read config and upstream rows from the lake, call one
core function, write its rows (and rejects) back atomically, report metadata.

Data flow (every arrow is a lake table read by the next asset)::

    raw_texts → text_personas → expanded_personas → persona_hub → (synthesis, see synthesis.py)

Every asset is partitioned by day (:mod:`.partitions`): a run reads and writes only its day, and
``persona_hub`` adds the day to the hub incrementally. Each asset reports its checks (:mod:`.checks`)
with its materialization.
"""

from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.config.shards import day_of, keep_shard, shard_index
from personahub_dagster.core.hub.config import DedupConfig, StateError
from personahub_dagster.core.hub.growth import Engine, grow_hub
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.on_ray import RayEngine
from personahub_dagster.core.hub.sample import DEFAULT_SIZE
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.stages.inbox import partition_paths
from personahub_dagster.core.stages.ingest import Skipped, read_documents, to_source_texts
from personahub_dagster.core.stages.parsing import PersonaFilters
from personahub_dagster.core.stages.personas import persona_to_persona, text_to_persona
from personahub_dagster.core.stages.stage import StageOutput
from personahub_dagster.core.storage.store import ConcurrentUpdate
from personahub_dagster.defs import checks
from personahub_dagster.defs.checks import CheckThresholds
from personahub_dagster.defs.metadata import (
    bar_chart,
    histogram,
    lake_metadata,
    md_table,
    progress_logger,
    table_definition,
)
from personahub_dagster.defs.partitions import SHARDS, partition_of, pipeline_partitions
from personahub_dagster.defs.pools import HUB_POOL
from personahub_dagster.defs.resources import (
    EmbedderResource,
    LakeResource,
    LLMResource,
    PromptsResource,
    RayClusterResource,
)
from personahub_dagster.defs.stages import LLMStageConfig, commit_stage, llm_asset, stage_metadata


class RawTextsConfig(dg.Config):
    paths: list[str] = Field(
        default=[], description="JSONL / Parquet files or text folders; empty: the day's inbox folder."
    )
    text_field: str = "text"
    max_texts: int | None = Field(default=12, description="Deterministic sample size; null = every text.")
    min_chars: int = 20
    max_chars: int | None = Field(default=1_000_000, description="Longer documents are skipped (null: keep).")
    skip_injections: bool = Field(
        default=True, description="Skip texts that give the model orders ('ignore previous instructions')."
    )
    checks: CheckThresholds = CheckThresholds()


class PersonaFilterConfig(dg.Config):
    """Quality gates for every persona; each failure is a counted reason in ``rejects``."""

    min_words: int = 4
    max_words: int = 80
    max_sentences: int = 2
    language: str | None = Field(default="en", description="en, or null to accept any language")
    require_person: bool = True

    def filters(self) -> PersonaFilters:
        return PersonaFilters(**self.model_dump())


class TextPersonasConfig(LLMStageConfig):
    perspectives: list[str] = Field(default=["read", "write", "like", "dislike"])
    granularity: str = Field(default="fine", description="fine | coarse (see the prompt file)")
    max_text_tokens: int = Field(default=1024, description="Longer texts are cut (and flagged).")
    template: str = Field(default="text_to_persona", description="Prompt file name (…_json: structured)")
    filters: PersonaFilterConfig = PersonaFilterConfig()
    checks: CheckThresholds = CheckThresholds()


class ExpandedPersonasConfig(LLMStageConfig):
    hops: int = Field(default=6, ge=0, description="Persona-to-Persona iterations (the paper: 6).")
    fanout: int = Field(default=1, ge=1, description="Relations asked per persona per hop.")
    template: str = Field(default="persona_to_persona", description="…_free: the model names the relation")
    filters: PersonaFilterConfig = PersonaFilterConfig()
    checks: CheckThresholds = CheckThresholds()


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


HUB_COMMIT_ATTEMPTS = 5


def _llm_stage_checks(out: StageOutput, t: CheckThresholds) -> list[dg.AssetCheckResult]:
    return [checks.reject_rate(out.rows.height, out.rejects.height, t), checks.not_empty(out.rows.height, t)]


@dg.asset(
    metadata=table_definition("source_texts"),
    group_name="ingest",
    kinds={"deltalake", "duckdb"},
    partitions_def=pipeline_partitions,
    check_specs=checks.specs("raw_texts", "not_empty"),
)
def raw_texts(
    context: dg.AssetExecutionContext, config: RawTextsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """The day's web-like documents (``inbox/<day>/``, or the files in ``paths``) into
    ``source_texts``; ids are hashes of the text. A shard's run keeps its own share of the day's texts
    (the same sample as one run over the day, split by id); the day's skipped documents are recorded
    once, by shard 0."""
    lk, day = lake.lake(context), partition_of(context)
    try:
        paths = config.paths or partition_paths(lake.inbox, day_of(day))
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from exc
    docs, skipped = read_documents(paths, config.text_field)
    texts, short = to_source_texts(
        docs,
        day,
        config.min_chars,
        config.max_texts,
        lambda ids: lk.ingested_before(ids, day_of(day)),
        config.max_chars,
        config.skip_injections,
    )
    skipped = skipped + short if shard_index(day) in (None, 0) else []
    texts = keep_shard(texts, day, SHARDS)
    lk.write_many(
        {"source_texts": texts, "rejects": _skips(skipped, day)}, producer="raw_texts", partition=day
    )
    for s in skipped[:20]:
        context.log.warning(f"skipped {s.source_uri}: {s.reason}")
    return dg.MaterializeResult(
        metadata={
            **lake_metadata(lk, "source_texts", texts.height),
            "inputs": dg.MetadataValue.json(paths),
            "documents_read": len(docs),
            "texts": texts.height,
            "skipped": len(skipped),
            "preview": md_table(texts, ["text_id", "doc_id", "text"]),
        },
        check_results=[checks.not_empty(texts.height, config.checks)],
    )


def _skips(skipped: list[Skipped], partition: str) -> pl.DataFrame:
    ts = now_utc()
    return rows_frame(
        "rejects",
        [
            {
                "stage": "raw_texts",
                "input_id": s.source_uri,
                "raw_output": s.raw or None,
                "reason": s.reason,
                "created_at": ts,
                "partition": partition,
            }
            for s in skipped
        ],
    )


@llm_asset("personas", ["reject_rate", "not_empty"], deps=[raw_texts], group_name="personas")
def text_personas(
    context, config: TextPersonasConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Text-to-Persona: who would read / write / like / dislike each text — one persona per text and
    perspective, each naming the text it came from."""
    lk, day = lake.lake(context), partition_of(context)
    texts = lk.read("source_texts", partitions=[day])
    out = text_to_persona(
        texts,
        llm.gateway(lk, context, config),
        prompts.template(config.template),
        perspectives=config.perspectives,
        granularity=config.granularity,
        max_text_tokens=config.max_text_tokens,
        filters=config.filters.filters(),
        partition=day,
        progress=progress_logger(context, "text_personas"),
    )
    per_perspective = dict(out.rows.group_by("perspective").len().iter_rows()) if out.rows.height else {}
    commit_stage(context, lk, "personas", out)
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "personas", out, ["persona_id", "perspective", "persona"]),
            "texts": texts.height,
            "texts_truncated": out.rows.filter(pl.col("text_truncated"))["source_text_id"].n_unique(),
            "personas": out.rows.height,
            "personas_by_perspective": dg.MetadataValue.json(per_perspective),
        },
        check_results=_llm_stage_checks(out, config.checks),
    )


@llm_asset("personas", ["reject_rate", "not_empty"], deps=[text_personas], group_name="personas")
def expanded_personas(
    context, config: ExpandedPersonasConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """Persona-to-Persona: expand every Text-to-Persona persona through close relationships, hop by hop."""

    def on_hop(hop: int, accepted: int, rejected: int) -> None:
        context.log.info(f"hop {hop}: {accepted} new personas, {rejected} rejected")

    lk, day = lake.lake(context), partition_of(context)
    gateway = llm.gateway(lk, context, config)
    seeds = lk.read("personas", "method = 'text'", partitions=[day])
    out = persona_to_persona(
        seeds,
        gateway,
        prompts.template(config.template),
        hops=config.hops,
        fanout=config.fanout,
        filters=config.filters.filters(),
        partition=day,
        progress=progress_logger(context, "expanded_personas"),
        on_hop=on_hop,
    )
    per_hop = (
        {str(h): n for h, n in out.rows.group_by("hop").len().sort("hop").iter_rows()}
        if out.rows.height
        else {}
    )
    commit_stage(context, lk, "personas", out)
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "personas", out, ["persona_id", "hop", "relation", "persona"]),
            "seed_personas": seeds.height,
            "personas": out.rows.height,
            "max_hop": int(out.rows["hop"].max()) if out.rows.height else 0,
            "personas_by_hop": dg.MetadataValue.json(per_hop),
            "hop_distribution": bar_chart(per_hop, "new personas per hop", "hop"),
        },
        check_results=_llm_stage_checks(out, config.checks),
    )


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


pipeline_job = dg.define_asset_job(
    "persona_hub_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=pipeline_partitions,
    description="One day: raw text to personas, the hub grown by the day, synthesized data and datasets.",
)

hub_growth_job = dg.define_asset_job(
    "hub_growth",
    selection=dg.AssetSelection.groups("ingest", "personas", "hub"),
    partitions_def=pipeline_partitions,
    description="One day (or shard): raw text to personas and the hub grown by them, no synthesis.",
)
