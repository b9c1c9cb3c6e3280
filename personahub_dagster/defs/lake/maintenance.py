"""Keeping the lake's tables healthy: a weekly job that compacts small files, checkpoints the Delta
logs and vacuums files no recent version reads (``personahub lake optimize`` does the same).

Daily partitions written stage by stage leave many small files and, with every re-materialization,
files that only old versions read; left alone, listing and reading a table slow down and storage
grows. The schedule starts stopped, like the other automation; the retention window is how far back
``--as-of`` can reach afterwards (Delta's default: 7 days).
"""

import dagster as dg
from pydantic import Field

from personahub_dagster.core.config.settings import settings
from personahub_dagster.defs.partitions import TIMEZONE
from personahub_dagster.defs.resources import LakeResource

MAINTENANCE_CRON = settings().maintenance_cron  # default: Sundays 03:00


class OptimizeConfig(dg.Config):
    retention_hours: float = Field(
        default=168.0, ge=0, description="Keep files that versions of the last H hours read (time travel)."
    )


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=30))
def optimize_lake(context: dg.OpExecutionContext, config: OptimizeConfig, lake: LakeResource) -> list[dict]:
    """Compact, checkpoint and vacuum every table; a commit that races a pipeline write is retried."""
    lk = lake.lake(context)
    done = lk.optimize(retention_hours=config.retention_hours, log=context.log.info)
    context.add_output_metadata(
        {
            "lake": lk.uri,
            "tables": dg.MetadataValue.json({r["table"]: r for r in done}),
            "files_compacted": sum(r["compacted"] for r in done),
            "files_removed": sum(r["vacuumed"] for r in done),
        }
    )
    return done


@dg.job(description="Compact, checkpoint and vacuum the lake's Delta tables.")
def lake_maintenance():
    optimize_lake()


weekly_lake_maintenance = dg.ScheduleDefinition(
    name="weekly_lake_maintenance",
    job=lake_maintenance,
    cron_schedule=MAINTENANCE_CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly: compact small files and vacuum old ones (time travel keeps 7 days).",
)
