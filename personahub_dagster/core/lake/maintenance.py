"""Lake maintenance: compaction of small files and vacuum of what no version within the retention
reads (the weekly job)."""

from __future__ import annotations

from collections.abc import Callable

from personahub_dagster.core.lake.schemas import SCHEMAS
from personahub_dagster.core.lake.writes import commit_properties, writer_properties


class Maintenance:
    """Compaction and vacuum of :class:`~personahub_dagster.core.lake.tables.Lake` (a base of it)."""

    def optimize(self, retention_hours: float = 168.0, log: Callable[[str], None] = print) -> list[dict]:
        """Compact small files, checkpoint the log, and vacuum files no version within
        ``retention_hours`` reads (time travel reaches back that far, no further)."""
        done = []
        for table in SCHEMAS:
            dt = self._open(table)
            if dt is None:
                continue
            before = len(dt.file_uris())
            metrics = dt.optimize.compact(
                writer_properties=writer_properties(),
                commit_properties=commit_properties({"personahub.producer": "optimize", **self._commit_info}),
            )
            removed = dt.vacuum(  # full: also the files of commits that never happened (a killed writer)
                retention_hours=int(retention_hours),
                dry_run=False,
                enforce_retention_duration=False,
                full=True,
            )
            dt.create_checkpoint()
            dt.cleanup_metadata()
            row = {
                "table": table,
                "files_before": before,
                "files_after": len(dt.file_uris()),
                "compacted": int(metrics.get("numFilesRemoved", 0)),
                "vacuumed": len(removed),
                "version": dt.version(),
            }
            log(
                f"{table}: {row['files_before']} → {row['files_after']} files, "
                f"{row['vacuumed']} old files removed, version {row['version']}"
            )
            done.append(row)
        return done
