"""The response cache a target names: a SQLite file for one machine, a ``postgresql://`` URL for a
team (the Postgres module, and its driver, load only when a URL asks for it)."""

from __future__ import annotations

from pathlib import Path

from personahub_dagster.core.llm.cache.sqlite import ResponseCache


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://", "postgresql+psycopg2://"))


def open_cache(target: str | Path) -> ResponseCache:
    """The cache at ``target``: a ``postgresql://`` URL, or a SQLite file path."""
    if is_postgres(target):
        from personahub_dagster.core.llm.cache.postgres import PostgresResponseCache

        return PostgresResponseCache(str(target))
    return ResponseCache(target)
