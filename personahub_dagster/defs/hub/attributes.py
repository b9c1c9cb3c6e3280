"""``persona_attributes`` (a checked record of each kept persona, with its topic cluster) and
``hub_composition`` (the hub's shares over those attributes, and their drift from a target mix)."""

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from personahub_dagster.core.hub import clusters
from personahub_dagster.core.hub.composition import (
    StaleTotals,
    apply_day,
    day_composition,
    drifts,
    hub_composition,
    rebuild_totals,
)
from personahub_dagster.core.hub.sample import hub_sample, sample_vectors
from personahub_dagster.core.stages.attributes import extract_attributes, label_clusters
from personahub_dagster.core.stages.synthesis import select_personas
from personahub_dagster.core.storage.store import ConcurrentUpdate
from personahub_dagster.defs.evaluation import checks
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.hub.persona_hub import HUB_COMMIT_ATTEMPTS, persona_hub
from personahub_dagster.defs.metadata import bar_chart, counts_of, lake_metadata, md_table, table_definition
from personahub_dagster.defs.partitions import partition_of, pipeline_partitions
from personahub_dagster.defs.resources import EmbedderResource, LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.llm_stage import LLMStageConfig, commit_stage, llm_asset, stage_metadata


class PersonaAttributesConfig(LLMStageConfig):
    template: str = Field(default="persona_attributes", description="Prompt file of the attribute schema.")
    clusters: int = Field(
        default=32, ge=1, description="Topic clusters of the hub (k-means on the hub sample)."
    )
    min_sample_to_cluster: int = Field(
        default=200, ge=5, description="Hub sample personas needed before the first clustering is trained."
    )
    recluster: bool = Field(
        default=False,
        description="Train a new clustering from the hub sample now (days assigned before keep the old ids "
        "until they are run again).",
    )
    label_template: str = Field(default="cluster_label", description="Prompt file that names a cluster.")
    max_personas: int | None = Field(
        default=None,
        ge=1,
        description="Attributes for a seeded sample of this many of the day's kept personas (null: all of "
        "them). `personahub demo` sets it for a first look; composition then describes the sample.",
    )
    seed: int = 0
    checks: CheckThresholds = CheckThresholds()


def _clustering(context, config: PersonaAttributesConfig, lk, gateway, prompts, embedder):
    """The live clustering; trained (and labelled) here when there is none yet and the hub sample is
    big enough, or when ``recluster`` asks for a new one."""
    store = lk.files.child("clusters")
    clustering, token = clusters.current(store)
    if clustering is not None and not config.recluster:
        return clustering
    sample = hub_sample(lk)
    if sample is None or sample.height < config.min_sample_to_cluster:
        context.log.info(
            f"no clustering yet: the hub sample has {0 if sample is None else sample.height} personas, "
            f"{config.min_sample_to_cluster} are needed (min_sample_to_cluster)"
        )
        return clustering
    vectors = sample_vectors(sample)
    centroids = clusters.train(vectors, config.clusters, config.seed)
    labels = label_clusters(
        clusters.representatives(sample, vectors, centroids), gateway, prompts.template(config.label_template)
    )
    made = clusters.Clustering("", centroids, labels, sample.height, embedder.model)
    try:
        clustering = clusters.save(store, made, token)
        context.log.info(
            f"trained clustering {clustering.version}: {clustering.k} clusters on {sample.height}"
        )
    except ConcurrentUpdate:  # another run trained one meanwhile: use it
        clustering, _ = clusters.current(store)
    return clustering


def _assign(rows: pl.DataFrame, clustering, vectors: pl.DataFrame) -> pl.DataFrame:
    if clustering is None or rows.is_empty():
        return rows.with_columns(cluster_id=pl.lit(clusters.UNCLUSTERED, pl.Int32))
    mine = rows.select("persona_id").join(vectors, on="persona_id", how="left")
    ids, sims = clustering.assign(np.ascontiguousarray(mine["vector"].to_numpy(), dtype=np.float32))
    return rows.with_columns(
        cluster_id=pl.Series(ids, dtype=pl.Int32),
        cluster_similarity=pl.Series(sims, dtype=pl.Float64),
        cluster_label=pl.Series([clustering.label(int(i)) for i in ids], dtype=pl.Utf8),
        clustering=pl.lit(clustering.version),
    )


@llm_asset("persona_attributes", ["reject_rate", "not_empty"], deps=[persona_hub], group_name="hub")
def persona_attributes(
    context,
    config: PersonaAttributesConfig,
    lake: LakeResource,
    llm: LLMResource,
    prompts: PromptsResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """Domain, occupation, expertise, age band (asked with a JSON schema and held to the persona's
    words: what it does not state is ``unknown``), locale and language, and a topic cluster for each of
    the day's kept personas. Clusters come from the hub's stored vectors: centroids trained once on the
    hub sample, the day's personas assigned to them; nothing outside the day is read or embedded."""
    lk, day = lake.lake(context), partition_of(context)
    kept = lk.read("hub", "dup_of IS NULL", partitions=[day])
    language = lk.read("personas", partitions=[day]).select("persona_id", "language").unique("persona_id")
    kept = kept.join(language, on="persona_id", how="left")
    if config.max_personas is not None:
        kept = select_personas(kept, config.max_personas, f"{config.seed}:attributes")
    gateway = llm.gateway(lk, context, config)
    out = extract_attributes(
        kept, gateway, prompts.template(config.template), partition=day, stage="persona_attributes"
    )
    clustering = _clustering(context, config, lk, gateway, prompts, embedder)
    vectors = None
    if clustering is not None and out.rows.height:
        vectors = clusters.partition_vectors(lk.files.child("hub_state"), day)
        if vectors is None or vectors.join(out.rows, on="persona_id", how="semi").height < out.rows.height:
            context.log.info("the hub state does not say where this day's vectors are: embedding them")
            texts = out.rows["persona"].to_list()
            vectors = pl.DataFrame(
                {"persona_id": out.rows["persona_id"], "vector": embedder.embedder().encode(texts)}
            )
    out.rows = _assign(out.rows, clustering, vectors)
    commit_stage(context, lk, "persona_attributes", out)
    corrected = out.rows.filter(pl.col("corrected").is_not_null()).height
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(
                lk, "persona_attributes", out, ["persona", "domain", "occupation", "cluster_label"]
            ),
            "personas": out.rows.height,
            "values_set_to_unknown": corrected,
            "by_domain": dg.MetadataValue.json(counts_of(out.rows, "domain")),
            "by_locale": dg.MetadataValue.json(counts_of(out.rows, "locale")),
            "clustering": clustering.version if clustering else "none yet",
            "clusters": clustering.k if clustering else 0,
        },
        check_results=[
            checks.reject_rate(out.rows.height, out.rejects.height, config.checks),
            checks.not_empty(out.rows.height, config.checks),
        ],
    )


class HubCompositionConfig(dg.Config):
    target_mix: dict[str, dict[str, float]] = Field(
        default={},
        description='Target shares to watch, e.g. {"domain": {"health": 0.2}, "locale": {"en": 0.6}}.',
    )
    max_drift: float = Field(
        default=0.1, ge=0, le=1, description="Warn when a share is further than this from its target."
    )


def _totals(context, lk, day: str, before: pl.DataFrame, today: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """The hub's running totals with the day's counts replaced; summed again from the table (and
    said so) when they had lost step with it."""
    store = lk.files.child("composition")
    for _ in range(HUB_COMMIT_ATTEMPTS):
        try:
            return apply_day(store, day, before, today), False
        except ConcurrentUpdate:  # another day's run moved the totals meanwhile: apply to theirs
            continue
        except StaleTotals as exc:
            context.log.warning(f"{exc}: summing the totals again from every day's rows")
            return rebuild_totals(store, lk.read("hub_composition")), True
    raise dg.Failure(f"the composition totals kept moving under {HUB_COMMIT_ATTEMPTS} attempts")


@dg.asset(
    metadata=table_definition("hub_composition"),
    deps=[persona_attributes],
    group_name="hub",
    kinds={"deltalake"},
    partitions_def=pipeline_partitions,
    check_specs=checks.specs("hub_composition", "composition_drift"),
    name="hub_composition",
)
def composition(
    context: dg.AssetExecutionContext, config: HubCompositionConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """The day's shares of its personas' domains, expertise, age bands, locales, languages and topic
    clusters, and the hub's over all days (a running total the day's counts replace their earlier
    selves in; nothing of other days is read); a warning when a share drifts past ``max_drift`` from
    ``target_mix``."""
    lk, day = lake.lake(context), partition_of(context)
    today = day_composition(lk.read("persona_attributes", partitions=[day])).with_columns(
        partition=pl.lit(day)
    )
    before = lk.read("hub_composition", partitions=[day])
    lk.write("hub_composition", today, producer="hub_composition", partition=day)
    totals, rebuilt = _totals(context, lk, day, before, today)
    live, _ = clusters.current(lk.files.child("clusters"))
    hub = hub_composition(totals, live.version if live else None)
    found = drifts(hub, config.target_mix)
    off = [d for d in found if abs(d.drift) > config.max_drift]
    for d in off:
        context.log.warning(f"{d.attribute} = {d.value}: {d.share:.3f} of the hub, target {d.target:.3f}")
    charts = {
        f"hub_{a}": bar_chart(
            dict(hub.filter(pl.col("attribute") == a).head(15).select("value", "personas").iter_rows()),
            f"the hub's personas by {a}",
            a,
        )
        for a in ("domain", "locale", "cluster")
        if hub.filter(pl.col("attribute") == a).height
    }
    return dg.MaterializeResult(
        metadata={
            **lake_metadata(lk, "hub_composition", today.height),
            "totals_rebuilt": rebuilt,
            "day": md_table(
                today.sort("attribute", "personas", descending=[False, True]),
                ["attribute", "value", "personas", "share"],
                n=30,
            ),
            "hub": md_table(hub, ["attribute", "value", "personas", "share"], n=40),
            **charts,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="composition_drift",
                passed=not off,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "max_drift": config.max_drift,
                    "compared": len(found),
                    "drifting": dg.MetadataValue.json(
                        [
                            {
                                "attribute": d.attribute,
                                "value": d.value,
                                "share": round(d.share, 4),
                                "target": d.target,
                            }
                            for d in off
                        ]
                    ),
                },
            )
        ],
    )
