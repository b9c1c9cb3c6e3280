"""The hub: ``dedup`` a file of personas, ``hub status`` / ``hub rebuild``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

from personahub_dagster.cli.common import open_lake
from personahub_dagster.core.config.settings import settings

PERSONA_COLUMNS = ("persona", "input persona")


def _read_table(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        return pl.read_ndjson(path, infer_schema_length=None)
    raise ValueError(f"{path}: expected .jsonl or .parquet")


def cmd_dedup(args: argparse.Namespace) -> int:
    from personahub_dagster.core.hub.config import DedupConfig
    from personahub_dagster.core.hub.embedder import Embedder
    from personahub_dagster.core.hub.index import HubIndex
    from personahub_dagster.core.lake.export import write_export
    from personahub_dagster.core.storage.location import parse_location
    from personahub_dagster.core.storage.store import Store

    src, out = Path(args.input), Path(args.out)
    try:
        df = _read_table(src)
    except (ValueError, OSError, pl.exceptions.PolarsError) as exc:
        print(f"dedup: cannot read {src}: {exc}", file=sys.stderr)
        return 2
    column = next((c for c in PERSONA_COLUMNS if c in df.columns), None)
    if column is None:
        print(
            f"dedup: {src} has no persona column (looked for {', '.join(PERSONA_COLUMNS)}; "
            f"found {', '.join(df.columns)})",
            file=sys.stderr,
        )
        return 2
    id_col = next((c for c in ("persona_id", "id") if c in df.columns), None)
    # without an id column, rows are named by number — prefixed with the file name when they join a
    # hub, so that they cannot collide with the rows of another file
    prefix = f"{src.name}#" if args.hub else ""
    keys = df[id_col].cast(pl.Utf8).to_list() if id_col else [f"{prefix}{i}" for i in range(df.height)]
    config = DedupConfig(minhash_threshold=args.minhash_threshold, cosine_threshold=args.cosine_threshold)
    embedder = Embedder(args.embedder)
    store = Store(parse_location(args.hub)) if args.hub else None
    hub = (HubIndex.load(store, config, embedder) if store else None) or HubIndex(config, embedder)
    started = time.monotonic()
    marks = hub.add(keys, df[column].cast(pl.Utf8).fill_null("").to_list())
    result = df.with_columns(marks.drop("key"))
    if store:
        hub.save(store)
    write_export(result, out)
    dups = result.filter(pl.col("dup_of").is_not_null())
    by_reason = dict(dups.group_by("dup_reason").len().iter_rows())
    print(
        f"{df.height} personas in {time.monotonic() - started:.1f} s: {df.height - dups.height} kept, "
        f"{dups.height} duplicates {by_reason} → {out}"
    )
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    """``hub status``: what the saved state holds. ``hub rebuild``: every day re-marked in date order
    from the lake's personas — the one step that reads the whole history, so it is never automatic."""
    from dataclasses import fields

    from personahub_dagster.core.hub.config import DedupConfig
    from personahub_dagster.core.hub.embedder import Embedder
    from personahub_dagster.core.hub.growth import rebuild_hub
    from personahub_dagster.core.hub.index import HubIndex
    from personahub_dagster.core.hub.sample import DEFAULT_SIZE

    lake = open_lake(args.lake)
    store = lake.files.child("hub_state")
    manifest = HubIndex.manifest(store)
    if args.action == "status":
        if manifest is None:
            print(f"{store.uri()}: no saved hub state yet")
            return 0
        days = manifest.get("partitions", [])
        print(
            f"{store.uri()}: {manifest['kept']:,} kept personas, {len(days)} partitions, "
            f"{len(manifest['chunks'])} chunks, rebuilt {manifest.get('rebuilds', 0)} times"
        )
        print(f"  arrival order: {', '.join(d['name'] for d in days[-10:])}{' …' if len(days) > 10 else ''}")
        return 0
    if not args.yes:
        print(
            "hub rebuild re-marks every day of the hub in date order, from every persona in the lake: "
            "marks of days that arrived late change, and so may the datasets made from them. "
            "Run it again with --yes to go ahead.",
            file=sys.stderr,
        )
        return 2
    known = {f.name for f in fields(DedupConfig)}
    saved = {k: v for k, v in ((manifest or {}).get("config") or {}).items() if k in known}
    config = DedupConfig(**{**saved, **{k: v for k, v in vars(args).items() if k in known and v is not None}})
    sample = int(((manifest or {}).get("sample") or {}).get("size", DEFAULT_SIZE))
    started = time.monotonic()

    def publish(hub: dict[str, pl.DataFrame]) -> None:
        for partition, rows in hub.items():
            lake.write("hub", rows, producer="persona_hub", partition=partition)

    with lake.lock("hub"):
        personas = lake.read("personas")
        current = settings()  # the pipeline's embedder, unless asked otherwise: the state must match it
        embedder = Embedder(args.embedder or current.embedder, backend=current.embedder_backend)
        growth = rebuild_hub(personas, store, embedder, config, publish, sample)
    print(
        f"hub rebuilt in {time.monotonic() - started:.1f} s: {personas.height:,} personas in "
        f"{len(growth.hub)} partitions, {growth.kept_total:,} kept (config {config})"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    dedup = sub.add_parser("dedup", help="mark near-duplicate personas in a JSONL / Parquet file")
    dedup.add_argument("input", help="a file with a 'persona' (or 'input persona') column")
    dedup.add_argument("--out", required=True, help="output .parquet or .jsonl: every row, with dup marks")
    dedup.add_argument("--minhash-threshold", type=float, default=0.9)
    dedup.add_argument("--cosine-threshold", type=float, default=0.9)
    dedup.add_argument("--embedder", default="all-MiniLM-L6-v2")
    dedup.add_argument(
        "--hub", help="a hub state folder or s3:// URL: check against it, then add the kept personas to it"
    )
    dedup.set_defaults(func=cmd_dedup)
    hub = sub.add_parser("hub", help="the hub's saved state, or re-mark every day in date order")
    hub.add_argument("action", choices=["status", "rebuild"])
    hub.add_argument("--yes", action="store_true", help="rebuild: go ahead (published marks may change)")
    hub.add_argument("--cosine-threshold", type=float, help="rebuild: new threshold (default: saved)")
    hub.add_argument("--minhash-threshold", type=float, help="rebuild: new threshold (default: saved)")
    hub.add_argument(
        "--embedder", default=None, help="rebuild: embedding model (default: PERSONAHUB_EMBEDDER)"
    )
    hub.add_argument("--lake")
    hub.set_defaults(func=cmd_hub)
