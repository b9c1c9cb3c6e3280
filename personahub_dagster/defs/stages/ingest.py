"""The day's raw text: the ``raw_texts`` asset reads the inbox's day (or shard), cleans and ids it, and
reports what it skipped and why."""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.config.shards import day_of, keep_shard, shard_index
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.stages.inbox import partition_paths
from personahub_dagster.core.stages.ingest import Skipped, read_documents, to_source_texts
from personahub_dagster.core.stages.provenance import LicenseRules
from personahub_dagster.defs.evaluation import checks
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.metadata import (
    counts_of,
    lake_metadata,
    md_table,
    table_definition,
)
from personahub_dagster.defs.partitions import SHARDS, partition_of, pipeline_partitions
from personahub_dagster.defs.resources import (
    LakeResource,
)

HUB_COMMIT_ATTEMPTS = 5


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
    licenses: dict[str, str] = Field(
        default={},
        description="Licence by source, for documents that do not state theirs: "
        '{"*wikipedia*": "cc-by-sa-4.0"} (a glob on the file path or name).',
    )
    default_license: str = Field(
        default="unknown", description="The licence of a document nothing else names."
    )
    checks: CheckThresholds = CheckThresholds()


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
        LicenseRules(config.licenses, config.default_license),
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
            "texts_by_language": dg.MetadataValue.json(counts_of(texts, "language")),
            "texts_by_license": dg.MetadataValue.json(counts_of(texts, "license")),
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
