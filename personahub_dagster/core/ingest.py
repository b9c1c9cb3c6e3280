"""Raw text ingestion: JSONL, Parquet and plain-text folders into ``source_texts`` rows.

Documents are identified by a hash of their text, so the same document arriving twice (two files,
two days) is one row. What cannot be used is not dropped silently: each skipped document or file
comes back with its reason, for the ``rejects`` table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from personahub_dagster.core.ids import content_id
from personahub_dagster.core.lake import now_utc

TEXT_SUFFIXES = {".txt", ".md"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
SUPPORTED = TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES


@dataclass(frozen=True)
class Document:
    source_uri: str
    doc_id: str
    text: str


@dataclass(frozen=True)
class Skipped:
    source_uri: str
    reason: str
    raw: str = ""


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED)
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")


def read_documents(
    paths: Iterable[str | Path], text_field: str = "text"
) -> tuple[list[Document], list[Skipped]]:
    """Every document in ``paths`` (files or folders), plus what had to be skipped and why."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for f in _files(paths):
        suffix = f.suffix.lower()
        try:
            if suffix in JSONL_SUFFIXES:
                _read_jsonl(f, text_field, docs, skipped)
            elif suffix in PARQUET_SUFFIXES:
                _read_parquet(f, text_field, docs, skipped)
            elif suffix in TEXT_SUFFIXES:
                docs.append(Document(str(f), f.stem, f.read_text(encoding="utf-8")))
            else:
                skipped.append(Skipped(str(f), f"unsupported file type {suffix or '(none)'}"))
        except (UnicodeDecodeError, OSError, pl.exceptions.PolarsError) as exc:
            skipped.append(Skipped(str(f), f"unreadable file: {type(exc).__name__}: {exc}"[:500]))
    return docs, skipped


def _read_jsonl(f: Path, text_field: str, docs: list[Document], skipped: list[Skipped]) -> None:
    with f.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            uri = f"{f}#L{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(uri, f"invalid JSON: {exc.msg}", line[:1000]))
                continue
            text = obj.get(text_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                skipped.append(Skipped(uri, f"no string field {text_field!r}", line[:1000]))
                continue
            docs.append(Document(uri, str(obj.get("doc_id") or obj.get("id") or lineno), text))


def _read_parquet(f: Path, text_field: str, docs: list[Document], skipped: list[Skipped]) -> None:
    columns = pl.read_parquet_schema(f)
    if text_field not in columns:
        skipped.append(Skipped(str(f), f"no column {text_field!r} (columns: {', '.join(columns)})"))
        return
    id_col = next((c for c in ("doc_id", "id") if c in columns), None)
    frame = pl.read_parquet(f, columns=[text_field] + ([id_col] if id_col else []))
    for i, row in enumerate(frame.iter_rows(named=True)):
        text = row[text_field]
        if not isinstance(text, str):
            skipped.append(Skipped(f"{f}#row{i}", f"column {text_field!r} is not a string"))
            continue
        docs.append(Document(f"{f}#row{i}", str(row[id_col]) if id_col else str(i), text))


def to_source_texts(
    docs: list[Document],
    partition: str,
    min_chars: int = 20,
    max_texts: int | None = None,
    known: dict[str, str] | None = None,
) -> tuple[pl.DataFrame, list[Skipped]]:
    """Normalise, filter and identify documents; returns the ``source_texts`` rows and the skips.

    ``max_texts`` keeps a deterministic, well-spread sample: the texts whose ids sort first (ids are
    hashes, so this is a stable pseudo-random choice, independent of file order). ``known`` maps text
    ids already in the lake to their partition: a document re-crawled on a later day is skipped (its
    personas exist already) instead of entering the hub twice.
    """
    skipped: list[Skipped] = []
    seen: set[str] = set()
    known = known or {}
    rows = []
    for d in docs:
        text = d.text.strip()
        if len(text) < min_chars:
            skipped.append(Skipped(d.source_uri, f"text shorter than {min_chars} characters", text[:1000]))
            continue
        tid = content_id("text", text)
        if tid in seen:
            continue  # the same document twice is one row
        if tid in known and known[tid] != partition:
            skipped.append(Skipped(d.source_uri, f"already ingested in partition {known[tid]}", text[:200]))
            continue
        seen.add(tid)
        rows.append(
            {
                "text_id": tid,
                "partition": partition,
                "source_uri": d.source_uri,
                "doc_id": d.doc_id,
                "text": text,
                "n_chars": len(text),
            }
        )
    df = pl.DataFrame(
        rows,
        schema={
            "text_id": pl.Utf8,
            "partition": pl.Utf8,
            "source_uri": pl.Utf8,
            "doc_id": pl.Utf8,
            "text": pl.Utf8,
            "n_chars": pl.Int64,
        },
    )
    df = df.sort("text_id")
    if max_texts is not None:
        df = df.head(max_texts)
    return df.with_columns(ingested_at=pl.lit(now_utc())), skipped
