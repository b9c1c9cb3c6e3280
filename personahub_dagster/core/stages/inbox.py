"""The inbox: where raw text arrives, one folder per day.

    inbox/2026-11-24/crawl-a.jsonl
    inbox/2026-11-24/notes/            (folders of .txt / .md)
    inbox/2026-11-25/shard-0.parquet

A folder named ``YYYY-MM-DD`` is the daily partition of that date. Files get there by any means (a
crawler, ``rsync``, ``personahub inbox add FILE --date D``); :func:`register` copies a file in
atomically so that a sensor never sees half of it. :func:`fingerprints` summarises each day's folder
(names, sizes, modification times) so a sensor can tell new or changed days from ones already run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path

from personahub_dagster.core.storage.store import atomic_write

DATE_FORMAT = "%Y-%m-%d"


def is_partition_name(name: str) -> bool:
    try:
        return dt.datetime.strptime(name, DATE_FORMAT).strftime(DATE_FORMAT) == name
    except ValueError:
        return False


def day_folder(inbox: str | os.PathLike[str], partition: str) -> Path:
    if not is_partition_name(partition):
        raise ValueError(f"partition {partition!r} is not a date (YYYY-MM-DD)")
    return Path(inbox) / partition


def _files(folder: Path) -> list[Path]:
    """Visible files under ``folder`` (hidden names — temp files being written — are not there yet)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def day_files(inbox: str | os.PathLike[str], partition: str) -> list[Path]:
    """The files waiting in a day's folder."""
    folder = day_folder(inbox, partition)
    return _files(folder) if folder.is_dir() else []


def partition_paths(inbox: str | os.PathLike[str], partition: str) -> list[str]:
    """What ``raw_texts`` reads for a day: the day's folder (read recursively by the ingester)."""
    folder = day_folder(inbox, partition)
    if not folder.is_dir() or not _files(folder):
        raise FileNotFoundError(
            f"no input for partition {partition}: put JSONL / Parquet / text files in {folder} "
            f"(or run: personahub inbox add FILE --date {partition})"
        )
    return [str(folder)]


def fingerprints(inbox: str | os.PathLike[str]) -> dict[str, str]:
    """``{date: fingerprint}`` of every non-empty day folder; the fingerprint changes when a file is
    added, removed, resized or rewritten."""
    root = Path(inbox)
    if not root.is_dir():
        return {}
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and is_partition_name(p.name)):
        files = _files(folder)
        if not files:
            continue
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[folder.name] = h.hexdigest()[:16]
    return out


def register(source: str | os.PathLike[str], inbox: str | os.PathLike[str], partition: str) -> Path:
    """Copy a file into the day's folder atomically (hidden temp file, fsync, rename), so a sensor or a
    run never reads part of it."""
    src = Path(source)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is not a file")
    folder = day_folder(inbox, partition)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    with src.open("rb") as fh:
        atomic_write(target, lambda out: shutil.copyfileobj(fh, out))
    return target
