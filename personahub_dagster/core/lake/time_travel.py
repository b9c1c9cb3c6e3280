"""Reading the lake as it was: :class:`AsOf` names a moment, or a version per table (the form a
run's ``delta_versions`` metadata gives), and every query of a lake opened with it sees that state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from personahub_dagster.core.lake.schemas import SCHEMAS


@dataclass(frozen=True)
class AsOf:
    """A past state of the lake: every table as of ``timestamp``, or the named tables at ``versions``
    (the others at their latest) — the form a run's ``delta_versions`` metadata gives."""

    timestamp: datetime | None = None
    versions: Mapping[str, int] | None = None

    @classmethod
    def parse(cls, text: str) -> AsOf:
        """``2026-11-29T10:00:00Z`` (or a date), or ``hub=12,personas=40``."""
        text = text.strip()
        if "=" in text:
            versions = {}
            for item in text.split(","):
                table, _, version = item.partition("=")
                if table.strip() not in SCHEMAS or not version.strip().isdigit():
                    raise ValueError(
                        f"--as-of: {item!r} is not TABLE=VERSION with a table of {sorted(SCHEMAS)}"
                    )
                versions[table.strip()] = int(version)
            return cls(versions=versions)
        if text.isdigit():
            raise ValueError(
                "--as-of: versions are per table; give TABLE=VERSION[,TABLE=VERSION] (as a run's "
                "delta_versions metadata shows them) or a timestamp like 2026-11-29T10:00:00Z"
            )
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--as-of: {text!r} is neither a timestamp nor TABLE=VERSION pairs") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(timestamp=moment)
