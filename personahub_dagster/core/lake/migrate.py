"""Converting a lake of earlier releases (Parquet slices) into Delta tables, with nothing lost.

Earlier releases wrote ``tables/<table>/<producer>/<partition>.parquet`` — one file per slice — and a
DuckDB file of views. The conversion writes every slice into a Delta table of a staging folder through
:meth:`Lake.write` (the same path the pipeline writes by), reads every table back through the same
reader ``personahub sql`` uses, and compares row counts and a content hash per table (a digest of the
sorted row hashes, so row order does not matter). Only when every table matches are the folders
swapped: the old slices move to ``legacy-parquet/`` (delete it once satisfied), the Delta tables take
their place. A failure before the swap leaves the old lake exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from personahub_dagster.core.lake.schemas import SCHEMAS, conform
from personahub_dagster.core.lake.tables import Lake


@dataclass(frozen=True)
class TableCheck:
    table: str
    slices: int
    rows_before: int
    rows_after: int
    hash_before: str
    hash_after: str

    @property
    def ok(self) -> bool:
        return self.rows_before == self.rows_after and self.hash_before == self.hash_after


def legacy_slices(root: Path) -> dict[str, list[Path]]:
    """The Parquet slices of each table of an old-layout lake (tables already in Delta are skipped)."""
    found = {}
    for table in SCHEMAS:
        folder = root / "tables" / table
        if folder.is_dir() and not (folder / "_delta_log").exists():
            slices = sorted(folder.glob("*/*.parquet"))
            if slices:
                found[table] = slices
    return found


def content_hash(table: str, df: pl.DataFrame) -> str:
    """Order-independent digest of a table's rows in its schema."""
    hashes = conform(table, df).hash_rows(seed=0).sort()
    return hashlib.sha256(hashes.to_numpy().tobytes()).hexdigest()[:16]


def migrate(root: str | os.PathLike[str], log: Callable[[str], None] = print) -> list[TableCheck]:
    """Convert the old-layout lake at ``root`` in place; the checks, one per table. Raises (leaving the
    old lake untouched) if any table's rows or content differ after conversion."""
    root = Path(root).resolve()
    slices = legacy_slices(root)
    if not slices:
        log(f"{root}: no Parquet-slice tables to convert")
        return []
    staging = root / ".migrate"
    shutil.rmtree(staging, ignore_errors=True)
    target = Lake(staging, cache=staging / "none.sqlite")  # no cache: llm_calls comes from its slice
    checks = []
    try:
        for table, files in slices.items():
            frames = []
            for path in files:
                df = conform(table, pl.read_parquet(path))
                target.write(table, df, producer=path.parent.name, partition=path.stem)
                frames.append(df)
            before = pl.concat(frames) if frames else conform(table, pl.DataFrame())
            after = target.read(table)
            check = TableCheck(
                table,
                len(files),
                before.height,
                after.height,
                content_hash(table, before),
                content_hash(table, after),
            )
            log(
                f"{table:<16} {check.slices:>5} slices  rows {check.rows_before:>9} → {check.rows_after:<9} "
                f"hash {check.hash_before} → {check.hash_after}  {'ok' if check.ok else 'MISMATCH'}"
            )
            checks.append(check)
        bad = [c.table for c in checks if not c.ok]
        if bad:
            raise RuntimeError(f"migration stopped, the old lake is unchanged: {', '.join(bad)} differ")
        legacy = root / "legacy-parquet"
        legacy.mkdir(exist_ok=True)
        for table in slices:
            os.replace(root / "tables" / table, legacy / table)
            os.replace(staging / "tables" / table, root / "tables" / table)
        (root / "personahub.duckdb").unlink(missing_ok=True)  # views over the old files
        log(f"converted {len(checks)} tables; the old slices are in {legacy} (delete it when satisfied)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checks
