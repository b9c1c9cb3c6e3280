"""Raw text ingestion: JSONL, Parquet and plain-text folders into ``source_texts`` rows.

Documents are identified by a hash of their text, so the same document arriving twice (two files,
two days) is one row. What cannot be used is not dropped silently: each skipped document or file
comes back with its reason, for the ``rejects`` table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pyarrow.lib import ArrowException

from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.schemas import SCHEMAS, now_utc
from personahub_dagster.core.stages.encoding import decode, detect, has_utf16_bom, is_utf16_text
from personahub_dagster.core.stages.language import detect_languages
from personahub_dagster.core.stages.provenance import (
    NO_RULES,
    SIDECAR,
    LicenseRules,
    record_license,
    record_url,
    sidecar,
)
from personahub_dagster.core.stages.sanitize import html_to_text, injection, looks_like_html, strip_control

TEXT_SUFFIXES = {".txt", ".md"}
HTML_SUFFIXES = {".html", ".htm"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES
DETECT_BYTES = 1 << 20  # a JSONL file's encoding is detected from its first MiB


@dataclass(frozen=True)
class Document:
    source_uri: str
    doc_id: str
    text: str
    license: str | None = None  # the document's own (record, row or sidecar): :mod:`.provenance`
    source_url: str | None = None
    encoding: str = "utf-8"  # what the bytes were read as (:mod:`.encoding`)


@dataclass(frozen=True)
class Skipped:
    source_uri: str
    reason: str
    raw: str = ""


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files under ``paths``. Hidden files are passed over (temp files of a write in progress,
    editor and OS droppings); every other file is read or reported."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.parts[-1:])
                and not f.name.endswith(SIDECAR)  # a file's licence and URL, read with it
            )
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")


def read_documents(
    paths: Iterable[str | Path], text_field: str = "text"
) -> tuple[list[Document], list[Skipped]]:
    """Every document in ``paths`` (files or folders), plus what had to be skipped and why.

    A bad file never stops the others: empty, binary, undecodable or unreadable files and unknown
    types each become one :class:`Skipped`; in JSONL a bad line skips that line only."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for f in _files(paths):
        suffix = f.suffix.lower()
        try:
            if suffix not in SUPPORTED:
                skipped.append(Skipped(str(f), f"unsupported file type {suffix or '(none)'}"))
            elif f.stat().st_size == 0:
                skipped.append(Skipped(str(f), "empty file"))
            elif suffix in PARQUET_SUFFIXES:
                _read_parquet(f, text_field, docs, skipped)
            elif _is_binary(f):
                skipped.append(Skipped(str(f), "binary file (NUL bytes), not text"))
            elif suffix in JSONL_SUFFIXES:
                _read_jsonl(f, text_field, docs, skipped)
            else:
                text, encoding = decode(f.read_bytes())
                if suffix in HTML_SUFFIXES:
                    text = _visible_text(str(f), text, skipped)
                docs.append(Document(str(f), f.stem, text, **sidecar(f), encoding=encoding))
        except UnicodeDecodeError as exc:
            skipped.append(
                Skipped(str(f), f"invalid UTF-8 at byte {exc.start}, and no encoding reads it as text")
            )
        except ValueError as exc:  # a sidecar that cannot be read: the file's documents wait for it
            skipped.append(Skipped(str(f), str(exc)[:500]))
        except (OSError, pl.exceptions.PolarsError, ArrowException) as exc:
            skipped.append(Skipped(str(f), f"unreadable file: {type(exc).__name__}: {exc}"[:500]))
    return docs, skipped


def _is_binary(f: Path) -> bool:
    with f.open("rb") as fh:
        head = fh.read(8192)
    return b"\x00" in head and not is_utf16_text(head, whole=len(head) < 8192)  # UTF-16's NULs are text


def _visible_text(uri: str, html: str, skipped: list[Skipped]) -> str:
    """HTML to the page's main text; the scripts, styles … and the boilerplate left out on the way
    are recorded."""
    page = html_to_text(html)
    if page.dropped:
        dropped = ", ".join(f"{n} {tag}" for tag, n in sorted(page.dropped.items()))
        boilerplate = (
            f"; {page.boilerplate_chars:,} characters of boilerplate" if page.boilerplate_chars else ""
        )
        skipped.append(Skipped(uri, f"html: dropped non-text blocks ({dropped}){boilerplate}"))
    elif page.boilerplate_chars:
        skipped.append(Skipped(uri, f"html: {page.boilerplate_chars:,} characters of boilerplate left out"))
    return page.text


def _read_jsonl(f: Path, text_field: str, docs: list[Document], skipped: list[Skipped]) -> None:
    before = (len(docs), len(skipped))
    _read_jsonl_lines(f, text_field, docs, skipped)
    if (len(docs), len(skipped)) == before:
        skipped.append(Skipped(str(f), "no documents in the file (blank lines only)"))


def _lines(f: Path) -> Iterator[tuple[int, str | None, str, int]]:
    """``(line number, text or None, encoding, bad byte)``, streamed: UTF-8 line by line (a bad line is that
    line's skip); a line that is not UTF-8, in the encoding the detector reads the file's start as, when it
    is confident; a UTF-16 file (its byte-order mark) decoded as UTF-16."""
    with f.open("rb") as fh:
        head = fh.read(DETECT_BYTES)
    if has_utf16_bom(head):
        with f.open(encoding="utf-16") as text:
            for lineno, line in enumerate(text, 1):
                yield lineno, line, "utf-16", 0
        return
    guess: tuple[str, str] | bool | None = False  # the file's encoding, detected when first needed
    with f.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8"), "utf-8", 0
                continue
            except UnicodeDecodeError as exc:
                bad = exc.start
            if guess is False:
                guess = detect(head)
            try:
                yield (lineno, raw.decode(guess[1]), guess[1], 0) if guess else (lineno, None, "", bad)
            except UnicodeDecodeError:
                yield lineno, None, "", bad


def _read_jsonl_lines(f: Path, text_field: str, docs: list[Document], skipped: list[Skipped]) -> None:
    meta = sidecar(f)
    for lineno, line, encoding, bad in _lines(f):
        uri = f"{f}#L{lineno}"
        if line is None:
            skipped.append(
                Skipped(
                    uri, f"invalid UTF-8 at byte {bad} of the line, and no encoding reads the file as text"
                )
            )
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(Skipped(uri, f"invalid JSON: {exc.msg}", line[:1000]))
            continue
        text = obj.get(text_field) if isinstance(obj, dict) else None
        if not isinstance(text, str):
            skipped.append(Skipped(uri, f"no string field {text_field!r}", line[:1000]))
            continue
        if looks_like_html(text):
            text = _visible_text(uri, text, skipped)
        doc_id = str(obj.get("doc_id") or obj.get("id") or lineno)
        own = {"license": record_license(obj) or meta.get("license"), "source_url": record_url(obj)}
        docs.append(Document(uri, doc_id, text, **own, encoding=encoding))


def _read_parquet(f: Path, text_field: str, docs: list[Document], skipped: list[Skipped]) -> None:
    columns = pl.read_parquet_schema(f)
    if text_field not in columns:
        skipped.append(Skipped(str(f), f"no column {text_field!r} (columns: {', '.join(columns)})"))
        return
    id_col = next((c for c in ("doc_id", "id") if c in columns), None)
    extra = [c for c in ("license", "licence", "source_url", "url") if c in columns]
    frame = pl.read_parquet(f, columns=[text_field] + ([id_col] if id_col else []) + extra)
    meta = sidecar(f)
    for i, row in enumerate(frame.iter_rows(named=True)):
        text = row[text_field]
        if not isinstance(text, str):
            skipped.append(Skipped(f"{f}#row{i}", f"column {text_field!r} is not a string"))
            continue
        own = {"license": record_license(row) or meta.get("license"), "source_url": record_url(row)}
        docs.append(Document(f"{f}#row{i}", str(row[id_col]) if id_col else str(i), text, **own))


def to_source_texts(
    docs: list[Document],
    partition: str,
    min_chars: int = 20,
    max_texts: int | None = None,
    known: Callable[[list[str]], Mapping[str, str]] | Mapping[str, str] | None = None,
    max_chars: int | None = 1_000_000,
    skip_injections: bool = True,
    licenses: LicenseRules = NO_RULES,
) -> tuple[pl.DataFrame, list[Skipped]]:
    """Normalise, filter and identify documents; returns the ``source_texts`` rows and the skips.

    ``max_texts`` keeps a deterministic, well-spread sample: the texts whose ids sort first (ids are
    hashes, so this is a stable pseudo-random choice, independent of file order). ``known`` maps text
    ids already in the lake to their partition — or looks them up, called once with the ids of the
    texts that pass the filters: a document re-crawled on a later day is skipped (its personas exist
    already) instead of entering the hub twice. Texts over ``max_chars`` (dumps, logs,
    whole books: Text-to-Persona reads only the first ~1k tokens anyway) and texts that give a language
    model orders (:func:`sanitize.injection`) are skipped with the reason. Each kept text's language is
    detected (:mod:`.language`) and stored with it, with its licence and URL (:mod:`.provenance`:
    the document's own, else ``licenses``' rule for its source, else ``unknown``).
    """
    skipped: list[Skipped] = []
    seen: set[str] = set()
    if callable(known):
        known = known(sorted({content_id("text", strip_control(d.text).strip()) for d in docs}))
    known = known or {}
    rows = []
    for d in docs:
        text = strip_control(d.text).strip()
        if len(text) < min_chars:
            skipped.append(Skipped(d.source_uri, f"text shorter than {min_chars} characters", text[:1000]))
            continue
        if max_chars is not None and len(text) > max_chars:
            skipped.append(
                Skipped(
                    d.source_uri,
                    f"text of {len(text):,} characters is over max_chars {max_chars:,}",
                    text[:1000],
                )
            )
            continue
        attack = injection(text) if skip_injections else None
        if attack:
            skipped.append(Skipped(d.source_uri, f"prompt injection suspected: {attack!r}", text[:1000]))
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
                "license": licenses.license_of(d.source_uri, d.license),
                "source_url": d.source_url,
                "encoding": d.encoding,
            }
        )
    columns = {c: t for c, t in SCHEMAS["source_texts"].items() if c not in ("ingested_at", "language")}
    df = pl.DataFrame(rows, schema=columns)
    df = df.sort("text_id")
    if max_texts is not None:
        df = df.head(max_texts)
    df = df.with_columns(language=pl.Series(detect_languages(df["text"].to_list()), dtype=pl.Utf8))
    return df.with_columns(ingested_at=pl.lit(now_utc())), skipped
