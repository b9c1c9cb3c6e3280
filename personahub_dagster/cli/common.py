"""What every command needs: the lake, the inbox and today's partition as the settings name them."""

from __future__ import annotations

import datetime

from personahub_dagster.core.config.settings import settings


def open_lake(path: str | None):
    from personahub_dagster.core.lake.tables import Lake

    return Lake(path or settings().lake)


def parse_as_of(text: str | None):
    from personahub_dagster.core.lake.time_travel import AsOf

    return AsOf.parse(text) if text else None


def inbox_path(path: str | None = None) -> str:
    return path or settings().inbox


def today() -> str:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(settings().timezone)
    return datetime.datetime.now(tz).strftime("%Y-%m-%d")


def print_counts(lake) -> None:
    counts = lake.counts()
    width = max(map(len, counts))
    print("rows per table:")
    for table, n in counts.items():
        print(f"  {table:<{width}}  {n:>7}")
