"""Evaluation assets: contamination against benchmark files, the diversity bands, and the day's report.

``contamination`` runs before ``datasets`` so that flagged rows are left out of the day's exports;
``diversity`` samples the hub as it stands after the day; ``report`` writes
``<lake>/reports/<day>.html``, the page to open before training on the day's data.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.config.settings import settings
from personahub_dagster.core.evaluation.contamination import check_contamination, load_benchmark
from personahub_dagster.core.evaluation.diversity import BANDS, band_summary, diversity
from personahub_dagster.core.evaluation.report import write_report
from personahub_dagster.core.hub.sample import hub_sample, sample_vectors
from personahub_dagster.core.stages.stage import StageOutput
from personahub_dagster.defs.metadata import (
    lake_metadata,
    md_table,
    table_definition,
)
from personahub_dagster.defs.partitions import partition_of, pipeline_partitions
from personahub_dagster.defs.resources import (
    EmbedderResource,
    LakeResource,
    LLMResource,
    PromptsResource,
)
from personahub_dagster.defs.stages.llm_stage import LLMStageConfig, commit_stage, llm_asset, stage_metadata


class ContaminationConfig(dg.Config):
    against: list[str] = Field(
        default=[],
        description="Benchmark test files (JSONL/Parquet with a text column); empty: $PERSONAHUB_BENCHMARKS "
        "(paths separated by ':'), else nothing is checked.",
    )
    text_field: str = Field(default="text", description="The benchmark files' text column (MATH: 'problem').")
    ngram: int = Field(default=13, ge=3, description="Word n-gram length; any shared n-gram flags a row.")
    cosine_threshold: float = Field(default=0.9, description="Embedding similarity that flags a row.")


def contamination_checks_asset(synthesized: list[str]) -> dg.AssetsDefinition:
    """``contamination_checks`` after the registry's synthesis assets (built with them, in
    :func:`personahub_dagster.defs.stages.synthesis.synthesis`)."""
    return dg.asset(
        name="contamination_checks",
        metadata=table_definition("contamination"),
        deps=synthesized,
        group_name="evaluation",
        kinds={"deltalake"},
        partitions_def=pipeline_partitions,
    )(contamination_checks)


def contamination_checks(
    context: dg.AssetExecutionContext,
    config: ContaminationConfig,
    lake: LakeResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The day's synthesized rows against benchmark test sets: word 13-gram overlap and embedding
    near-duplicates. Flagged rows stay in the lake (table ``contamination``) and leave the exports."""
    lk, day = lake.lake(context), partition_of(context)
    paths = config.against or settings().benchmark_files()
    try:
        benchmarks = dict(load_benchmark(p, config.text_field) for p in paths)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(str(exc)) from exc
    found = check_contamination(
        lk,
        benchmarks,
        embedder.embedder(),
        partitions=[day],
        n=config.ngram,
        cosine_threshold=config.cosine_threshold,
    )
    flagged = found.filter("flagged")
    for name in benchmarks:
        context.log.info(f"{name}: {flagged.filter(pl.col('benchmark') == name).height} rows flagged")
    return dg.MaterializeResult(
        metadata={
            **lake_metadata(lk, "contamination", found.height),
            "benchmarks": dg.MetadataValue.json(sorted(benchmarks)),
            "rows_checked": found["row_id"].n_unique(),
            "flagged": flagged.height,
            "flagged_rows": md_table(
                flagged, ["row_id", "benchmark", "reason", "similarity", "benchmark_text"]
            ),
        }
    )


class DiversityConfig(LLMStageConfig):
    bands: list[float] = Field(default=list(BANDS), description="Persona similarity bands (the paper's).")
    tolerance: float = Field(default=0.01, description="A pair is in a band within ± this.")
    per_band: int = Field(default=3, ge=1, description="Pairs per band (the paper: many; this: demo-sized).")
    seed: int = 0
    data_type: str = Field(default="math_problem", description="What to synthesize per persona.")


@llm_asset("diversity_pairs", deps=["persona_hub"], group_name="evaluation")
def diversity_bands(
    context: dg.AssetExecutionContext,
    config: DiversityConfig,
    lake: LakeResource,
    llm: LLMResource,
    embedder: EmbedderResource,
    prompts: PromptsResource,
) -> dg.MaterializeResult:
    """The paper's Figure 10 on the hub so far: persona pairs in similarity bands, a problem for each
    persona at temperature 0, and how similar the two problems are, per band. The personas are the
    hub's sample (``persona_hub``'s ``sample_size`` kept personas, with the vectors stored at growth):
    the step costs the same on night 1 and night 1,000."""
    lk, day = lake.lake(context), partition_of(context)
    sample = hub_sample(lk)
    if sample is None:
        raise dg.Failure("the hub has no saved state yet: materialize persona_hub first")
    dt = prompts.data_type(config.data_type)
    pairs, out, stats = diversity(
        sample,
        sample_vectors(sample),
        embedder.embedder(),
        llm.gateway(lk, context, config),
        dt,
        prompts.template(dt.template),
        bands=config.bands,
        tolerance=config.tolerance,
        per_band=config.per_band,
        seed=config.seed,
        partition=day,
    )
    out = StageOutput(pairs, out.rejects, out.stats)  # its rows are the pairs; the problems are inputs
    commit_stage(context, lk, "diversity_pairs", out)
    summary = band_summary(pairs) if pairs.height else pairs
    return dg.MaterializeResult(
        metadata={
            **stage_metadata(lk, "diversity_pairs", out),
            "pairs": pairs.height,
            **{f"hub_{k}": round(v, 4) if isinstance(v, float) else v for k, v in stats.items()},
            "bands": md_table(summary.with_columns(pl.col(pl.Float64).round(3)), list(summary.columns), n=20),
        }
    )


@dg.asset(
    deps=["datasets", "contamination_checks", "hub_composition", "persona_fidelity", diversity_bands],
    group_name="evaluation",
    kinds={"html"},
    partitions_def=pipeline_partitions,
)
def report(
    context: dg.AssetExecutionContext, lake: LakeResource, prompts: PromptsResource
) -> dg.MaterializeResult:
    """``<lake>/reports/<day>.html``: counts, yields, reject reasons, tokens and cost, the hub,
    diversity bands, contamination hits and math validity — one self-contained page."""
    lk, day = lake.lake(context), partition_of(context)
    where = write_report(lk, None, day, prompts.prompts_dir, context.run_id)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(where)})
