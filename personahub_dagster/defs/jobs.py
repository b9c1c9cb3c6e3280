"""The jobs: one day of the whole pipeline, and one day of hub growth alone (what the nightly
schedule runs)."""

import dagster as dg

from personahub_dagster.defs.partitions import pipeline_partitions

HUB_COMMIT_ATTEMPTS = 5


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
