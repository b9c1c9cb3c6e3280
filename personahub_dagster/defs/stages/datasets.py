"""``datasets``: the day's rows of every data type exported in the public release's format."""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.lake.export import (
    RELEASE_COLUMNS,
    export_conversations,
    export_frame,
    export_pairs,
    export_writer,
)
from personahub_dagster.core.stages.data_types import DataType
from personahub_dagster.core.stages.provenance import wanted_licenses
from personahub_dagster.core.stages.verifiable import DATA_TYPE
from personahub_dagster.defs.evaluation import checks
from personahub_dagster.defs.metadata import counts_of, lake_metadata
from personahub_dagster.defs.partitions import partition_of, pipeline_partitions
from personahub_dagster.defs.resources import LakeResource


class DatasetsConfig(dg.Config):
    formats: list[str] = Field(default=["parquet", "jsonl"], description="parquet and/or jsonl")
    licenses: list[str] | None = Field(
        default=None,
        description="Only rows whose source text is under these licences (commercial-safe: the permissive "
        "list); null: every row, each with its licence.",
    )


VERIFIABLE_RELEASE, PAIRS_RELEASE, CONVERSATIONS_RELEASE = (
    "verifiable_instruction",
    "preference",
    "conversation",
)
EXPORT_TYPES = {**dict.fromkeys(RELEASE_COLUMNS, pl.Utf8), "row_id": pl.Utf8, "persona_id": pl.Utf8}
EXPORT_TYPES |= {"source_text_id": pl.Utf8, "prompting_mode": pl.Utf8, "model": pl.Utf8, "license": pl.Utf8}


def datasets_asset(types: dict[str, DataType]) -> dg.AssetsDefinition:
    """The day's exports of every data type in ``types``."""

    @dg.asset(
        deps=[
            *(dt.asset for dt in types.values()),
            *(["math_checks"] if "math_problem" in types else []),
            "contamination_checks",
            "verifiable_instructions",
            "conversations",
            "preference_pairs",
        ],
        group_name="datasets",
        kinds={"parquet"},
        partitions_def=pipeline_partitions,
        check_specs=checks.specs("datasets", "export_schema", "lineage"),
    )
    def datasets(
        context: dg.AssetExecutionContext, config: DatasetsConfig, lake: LakeResource
    ) -> dg.MaterializeResult:
        """The day's rows of every data type in ``<lake>/datasets/<release>/<day>.parquet`` (and .jsonl),
        in the public PersonaHub release's columns (``input persona``, ``synthesized text``,
        ``description``) plus ids that walk back to the source text and its licence."""
        lk, day = lake.lake(context), partition_of(context)
        counts, paths, frames, mix = {}, {}, {}, {}
        wanted = wanted_licenses(config.licenses) if config.licenses is not None else None
        for dt in types.values():
            # without rows flagged as contaminated, and of the licences asked for
            df = export_frame(lk, dt.name, partitions=[day], licenses=wanted)
            counts[dt.release] = df.height
            mix[dt.release] = counts_of(df, "license")
            frames[dt.release] = df
            for fmt in config.formats:
                key = f"{dt.release}/{day}.{fmt}"
                paths[key] = lk.files.put(f"datasets/{key}", export_writer(df, fmt))
        # verifiable instructions (answers that met every constraint), the preference pairs in TRL's DPO
        # columns (prompt, chosen, rejected) and the conversations as messages, each followed by ours
        extra = {
            VERIFIABLE_RELEASE: export_frame(lk, DATA_TYPE, partitions=[day], licenses=wanted),
            PAIRS_RELEASE: export_pairs(lk, partitions=[day], licenses=wanted),
            CONVERSATIONS_RELEASE: export_conversations(lk, partitions=[day], licenses=wanted),
        }
        for release, df in extra.items():
            counts[release] = df.height
            mix[release] = counts_of(df, "license")
            for fmt in config.formats:
                key = f"{release}/{day}.{fmt}"
                paths[key] = lk.files.put(f"datasets/{key}", export_writer(df, fmt))
        frames[VERIFIABLE_RELEASE] = extra[VERIFIABLE_RELEASE]
        broken = lk.broken_lineage(day)
        return dg.MaterializeResult(
            metadata={
                **lake_metadata(lk),
                "rows_by_release": dg.MetadataValue.json(counts),
                "rows_by_license": dg.MetadataValue.json(mix),
                "rows": sum(counts.values()),
                "files": dg.MetadataValue.json(paths),
            },
            check_results=[
                checks.export_schema(frames, EXPORT_TYPES),
                checks.lineage(broken, sum(counts.values())),
            ],
        )

    return datasets
