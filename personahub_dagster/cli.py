"""``personahub``: run the pipeline, trace lineage, show lake statistics.

    personahub demo [--date D] [--corpus PATH…] [--texts N] [--hops H] [--personas N]
                                                            materialize every asset (the Dagster job)
    personahub export --type TYPE [--format jsonl|parquet] OUT
                                                            a data type in the PersonaHub release format
    personahub inbox add FILE… [--date YYYY-MM-DD] | list   register raw text as a day's partition
    personahub lineage ID                                   generated row → personas → source text
    personahub stats                                        rows per table, rejects by reason
    personahub sql "SELECT …" [--as-of WHEN]                DuckDB SQL over the lake (now, or as it was)
    personahub lake versions | history TABLE | optimize | migrate
                                                            Delta versions, commits, compaction, conversion
    personahub dedup INPUT --out OUTPUT [--hub DIR]         mark near-duplicate personas in a file
    personahub hub status | rebuild [--yes]                 the hub's saved state; re-mark all in date order
    personahub evaluate diversity [--per-band N] [--date D] persona-similarity bands → problem similarity
    personahub evaluate contamination --against FILE…       n-gram + embedding overlap with a benchmark
    personahub report [--out FILE] [--date D]               the self-contained HTML dataset report
    personahub settings [--table]                           every PERSONAHUB_* setting and its value

The lake is ``--lake`` or ``$PERSONAHUB_LAKE``: a folder (default ``./lake``) or ``s3://bucket/prefix``.
``--as-of`` takes a timestamp (``2026-11-29T10:00:00Z``) or ``TABLE=VERSION,…`` as a run's metadata
shows them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

from personahub_dagster.core.config.settings import Settings, SettingsError, settings, settings_table


def _lake(path: str | None):
    from personahub_dagster.core.lake.tables import Lake

    return Lake(path or settings().lake)


def _as_of(text: str | None):
    from personahub_dagster.core.lake.time_travel import AsOf

    return AsOf.parse(text) if text else None


def _inbox(path: str | None = None) -> str:
    return path or settings().inbox


def _today() -> str:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(settings().timezone)
    return datetime.datetime.now(tz).strftime("%Y-%m-%d")


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from personahub_dagster.core.stages.inbox import register
    from personahub_dagster.core.stages.prompts import bundled_assets_dir

    if args.lake:
        os.environ["PERSONAHUB_LAKE"] = args.lake
    from personahub_dagster.definitions import defs

    day = args.date or _today()
    ops: dict[str, dict] = {}
    raw: dict[str, object] = {}
    if args.corpus:
        raw["paths"] = [str(Path(p).resolve()) for p in args.corpus]
    else:  # the bundled sample arrives like any day's data: in the inbox
        register(bundled_assets_dir() / "corpus" / "sample.jsonl", _inbox(), day)
    if args.texts is not None:
        raw["max_texts"] = args.texts if args.texts > 0 else None
    if raw:
        ops["raw_texts"] = {"config": raw}
    if args.hops is not None:
        ops["expanded_personas"] = {"config": {"hops": args.hops}}
    if args.personas is not None:
        from personahub_dagster.defs.synthesis import registry

        for dt in registry().values():
            ops[dt.asset] = {"config": {"n_personas": args.personas}}
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    from personahub_dagster.defs.partitions import lake_partition, run_keys

    job = defs().resolve_job_def("persona_hub_pipeline")
    started = time.monotonic()
    for key in run_keys(day):  # the day, or each of its shards in order (PERSONAHUB_SHARDS)
        result = job.execute_in_process(
            run_config={"ops": ops}, instance=instance, partition_key=key, raise_on_error=False
        )
        if not result.success:
            break
    elapsed = time.monotonic() - started
    lake = _lake(None)
    if not result.success:
        print(
            f"\nThe pipeline failed after {elapsed:.0f} s; see the log above. Lake: {lake.uri}",
            file=sys.stderr,
        )
        return 1
    print(f"\nPersona Hub demo (partition {day}) finished in {elapsed:.0f} s.\n")
    _print_counts(lake)
    with lake.connect(tables=["generations"]) as con:
        row = con.execute("SELECT row_id FROM generations ORDER BY row_id LIMIT 1").fetchone()
    print(f"\nLake: {lake.uri}  (Delta tables under tables/)")
    print('  SQL:      personahub sql "SELECT …"   (add --as-of to read an earlier version)')
    if row:
        print(f"  Lineage:  personahub lineage {row[0]}")
    report = lake.files.uri(f"reports/{lake_partition(key)}.html")
    print(f"  Report:   {report}  (counts, yields, diversity, contamination)")
    print("  UI:       make ui   → http://127.0.0.1:3000 (asset graph, runs, metadata)")
    return 0


def _print_counts(lake) -> None:
    counts = lake.counts()
    width = max(map(len, counts))
    print("rows per table:")
    for table, n in counts.items():
        print(f"  {table:<{width}}  {n:>7}")


STATS_QUERIES = {
    "personas by method and hop": "SELECT method, hop, count(*) FROM personas GROUP BY ALL ORDER BY ALL",
    "hub: kept vs duplicates": (
        "SELECT coalesce(dup_reason, 'kept'), count(*) FROM hub GROUP BY ALL ORDER BY 2 DESC"
    ),
    "generations by type and mode": (
        "SELECT data_type, prompting_mode, count(*) FROM generations GROUP BY ALL ORDER BY ALL"
    ),
    "math agreement filter (problems, agreed)": (
        "SELECT count(*), count(*) FILTER (WHERE agreement) FROM math_checks"
    ),
    "rejects by stage and reason": (
        "SELECT stage, reason, count(*) FROM rejects GROUP BY ALL ORDER BY 3 DESC LIMIT 20"
    ),
    "llm calls by stage (status, calls, prompt tokens, completion tokens, seconds)": (
        "SELECT stage, status, count(*), sum(prompt_tokens), sum(completion_tokens), "
        "round(sum(latency_s), 1) FROM llm_calls GROUP BY ALL ORDER BY ALL"
    ),
}


def cmd_stats(args: argparse.Namespace) -> int:
    lake = _lake(args.lake)
    if not lake.exists():
        print(f"no lake at {lake.uri}; run `personahub demo` first", file=sys.stderr)
        return 1
    _print_counts(lake)
    with lake.connect() as con:
        for title, sql in STATS_QUERIES.items():
            rows = con.execute(sql).fetchall()
            print(f"\n{title}:")
            for r in rows:
                print("  " + "  ".join("" if v is None else str(v) for v in r))
            if not rows:
                print("  (none)")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    lake = _lake(args.lake)
    try:
        steps = lake.lineage(args.id, _as_of(args.as_of))
    except (KeyError, ValueError) as exc:
        print(f"lineage: {exc.args[0]}", file=sys.stderr)
        return 1
    for depth, step in enumerate(steps):
        pad = "  " * depth
        detail = ", ".join(f"{k}={v}" for k, v in step.detail.items() if v is not None)
        arrow = "" if depth == 0 else "↳ "
        print(f"{pad}{arrow}{step.kind} {step.id} ({detail})")
        body = textwrap.shorten(step.text.replace("\n", " "), width=args.width)
        print(textwrap.indent(textwrap.fill(body, width=100), pad + "    "))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    lake = _lake(args.lake)
    try:
        as_of = _as_of(args.as_of)
    except ValueError as exc:
        print(f"sql: {exc}", file=sys.stderr)
        return 2
    with lake.connect(as_of) as con:
        try:
            rel = con.sql(args.query)
        except duckdb.Error as exc:
            print(f"sql: {exc}", file=sys.stderr)
            return 1
        if rel is not None:
            rel.show(max_rows=args.max_rows, max_width=200)
    return 0


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


def cmd_inbox(args: argparse.Namespace) -> int:
    from personahub_dagster.core.stages.inbox import fingerprints, register

    inbox = _inbox(args.inbox)
    if args.action == "add":
        day = args.date or _today()
        for f in args.files:
            try:
                print(f"{f} → {register(f, inbox, day)}")
            except (FileNotFoundError, ValueError) as exc:
                print(f"inbox: {exc}", file=sys.stderr)
                return 2
        return 0
    days = fingerprints(inbox)
    for day in days:
        files = sorted(
            p for p in (Path(inbox) / day).rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        print(f"{day}  {len(files)} file(s): {', '.join(p.name for p in files[:5])}")
    if not days:
        print(f"{inbox}: no day folders yet (personahub inbox add FILE --date YYYY-MM-DD)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from personahub_dagster.core.lake.export import export_frame, write_export
    from personahub_dagster.core.stages.data_types import load_data_types

    types = load_data_types(settings().prompts_dir)
    by_any_name = {k: dt for dt in types.values() for k in (dt.name, dt.asset, dt.release)}
    if args.type not in by_any_name:
        print(f"export: unknown data type {args.type!r}; choose one of {', '.join(types)}", file=sys.stderr)
        return 2
    dt = by_any_name[args.type]
    df = export_frame(
        _lake(args.lake), dt.name, args.mode, args.agreed_only, args.dates, args.include_contaminated
    )
    if not args.all_columns:
        df = df.drop("constraints", *([] if dt.name == "math_problem" else ["agreement", "answer"]))
        df = df if args.include_contaminated else df.drop("contaminated")
    path = write_export(df, args.out, args.format)
    print(f"{df.height} {dt.description} rows → {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from personahub_dagster.core.evaluation.contamination import check_contamination, load_benchmark
    from personahub_dagster.core.hub.embedder import Embedder

    lake = _lake(args.lake)
    embedder = Embedder(settings().embedder, backend=settings().embedder_backend)
    if args.what == "contamination":
        if not args.against:
            print("evaluate contamination: --against FILE… is required", file=sys.stderr)
            return 2
        try:
            benchmarks = dict(load_benchmark(p, args.text_field) for p in args.against)
        except (ValueError, FileNotFoundError) as exc:
            print(f"evaluate contamination: {exc}", file=sys.stderr)
            return 2
        found = check_contamination(
            lake, benchmarks, embedder, partitions=args.dates, n=args.ngram, cosine_threshold=args.cosine
        )
        flagged = found.filter("flagged")
        print(
            f"{found['row_id'].n_unique()} rows checked against {', '.join(benchmarks)}: "
            f"{flagged.height} flagged"
        )
        for r in flagged.head(20).iter_rows(named=True):
            print(
                f"  {r['row_id']}  {r['reason']}  (cosine {r['similarity']:.3f})  "
                f"~ {r['benchmark_text'][:80]!r}"
            )
        return 0

    import dagster as dg

    from personahub_dagster.defs.resources import default_resources

    # resolved as a run would (EnvVar settings such as PERSONAHUB_API_KEY read now, not passed as names)
    with dg.build_resources({k: default_resources()[k] for k in ("llm", "prompts")}) as built:
        return _evaluate_diversity(args, lake, embedder, built.llm, built.prompts)


def _evaluate_diversity(args: argparse.Namespace, lake, embedder, llm, prompts) -> int:
    from personahub_dagster.core.evaluation.diversity import band_summary, diversity
    from personahub_dagster.core.hub.sample import hub_sample, sample_vectors

    day = args.dates[0] if args.dates else _today()
    sample = hub_sample(lake)
    if sample is None or sample.is_empty():
        print(f"evaluate diversity: the hub in {lake.uri} has no personas yet", file=sys.stderr)
        return 2
    dt = prompts.data_type(args.data_type)
    pairs, out, stats = diversity(
        sample,
        sample_vectors(sample),
        embedder,
        llm.gateway(lake),
        dt,
        prompts.template(dt.template),
        per_band=args.per_band,
        partition=day,
    )
    lake.write_many(
        {"diversity_pairs": pairs, "rejects": out.rejects}, producer="diversity_bands", partition=day
    )
    print(band_summary(pairs) if pairs.height else "no pair in any band got two problems")
    print(
        "hub: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from personahub_dagster.core.evaluation.report import write_report

    lake = _lake(args.lake)
    path = write_report(lake, args.out, args.date, settings().prompts_dir)
    print(f"report → {path}")
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    from personahub_dagster.core.lake.migrate import migrate

    lake = _lake(args.lake)
    if args.action == "migrate":
        if not lake.is_local:
            print(
                "lake migrate: earlier releases wrote local lakes only; give the local folder",
                file=sys.stderr,
            )
            return 2
        try:
            checks = migrate(lake.root)
        except (RuntimeError, ValueError) as exc:
            print(f"lake migrate: {exc}", file=sys.stderr)
            return 1
        return 0 if all(c.ok for c in checks) else 1
    if args.action == "optimize":
        lake.optimize(retention_hours=args.retention_hours)
        return 0
    if args.action == "history":
        if not args.table:
            print("lake history: name a table", file=sys.stderr)
            return 2
        for commit in lake.history(args.table, args.limit):
            when = datetime.datetime.fromtimestamp(commit["timestamp"] / 1000, datetime.UTC)
            who = commit.get("personahub.producer", "")
            part = commit.get("personahub.partition", "")
            run = commit.get("dagster.run_id", "")
            op = commit["operation"]
            print(f"{commit['version']:>6}  {when:%Y-%m-%d %H:%M:%S}  {op:<8} {who} {part} {run}")
        return 0
    for table, version in lake.versions().items():
        print(f"{table:<16} {version}")
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

    lake = _lake(args.lake)
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


def cmd_settings(args: argparse.Namespace) -> int:
    if args.table:
        print(settings_table(), end="")
        return 0
    from personahub_dagster.core.llm.cache.postgres import redact_url

    current = settings()
    for name in Settings.model_fields:
        value = getattr(current, name)
        shown = "" if value is None else value  # a SecretStr prints as **********
        if name == "cache" and value:
            shown = redact_url(value)  # a postgresql:// URL may carry a password
        print(f"PERSONAHUB_{name.upper():<20} {shown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personahub", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialize every asset on the bundled sample corpus")
    demo.add_argument("--lake", help="lake directory (default $PERSONAHUB_LAKE or ./lake)")
    demo.add_argument(
        "--corpus",
        nargs="+",
        metavar="PATH",
        help="your own JSONL / Parquet files or text folders (default: the bundled sample)",
    )
    demo.add_argument("--date", help="the daily partition to run (default: today)")
    demo.add_argument("--texts", type=int, help="texts to sample (default 12; 0 = all)")
    demo.add_argument("--hops", type=int, help="Persona-to-Persona hops (default 6)")
    demo.add_argument(
        "--personas", type=int, help="personas per data type and prompting mode (default: the registry's, 3)"
    )
    demo.set_defaults(func=cmd_demo)

    lineage = sub.add_parser("lineage", help="trace a generated row (or persona) back to its source text")
    lineage.add_argument("id", help="a row_id (g-…), persona_id (p-…) or text_id (t-…)")
    lineage.add_argument("--lake")
    lineage.add_argument("--width", type=int, default=400, help="characters of text shown per step")
    lineage.add_argument("--as-of", help="the lake as it was: a timestamp, or TABLE=VERSION,…")
    lineage.set_defaults(func=cmd_lineage)

    stats = sub.add_parser("stats", help="row counts per table and breakdowns")
    stats.add_argument("--lake")
    stats.set_defaults(func=cmd_stats)

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

    inbox = sub.add_parser("inbox", help="register files as a day's raw text, or list the days")
    inbox.add_argument("action", choices=["add", "list"])
    inbox.add_argument("files", nargs="*", help="JSONL / Parquet / text files (add)")
    inbox.add_argument("--date", help="the day's partition, YYYY-MM-DD (default: today)")
    inbox.add_argument("--inbox", help="inbox folder (default $PERSONAHUB_INBOX or ./inbox)")
    inbox.set_defaults(func=cmd_inbox)

    export = sub.add_parser("export", help="write a data type in the PersonaHub release format")
    export.add_argument("--type", required=True, help="data type, asset or release name (math, tool, …)")
    export.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the file suffix")
    export.add_argument("--mode", nargs="+", help="only these prompting modes")
    export.add_argument("--agreed-only", action="store_true", help="math: agreed solutions only")
    export.add_argument("--all-columns", action="store_true", help="also the constraints column")
    export.add_argument("--date", nargs="+", dest="dates", help="only these daily partitions")
    export.add_argument(
        "--include-contaminated", action="store_true", help="keep rows a contamination check flagged"
    )
    export.add_argument("--lake")
    export.add_argument("out", help="output file")
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser("evaluate", help="diversity bands, or contamination against a benchmark")
    evaluate.add_argument("what", choices=["diversity", "contamination"])
    evaluate.add_argument("--against", nargs="+", help="contamination: benchmark JSONL / Parquet files")
    evaluate.add_argument("--text-field", default="text", help="the benchmark's text column (MATH: problem)")
    evaluate.add_argument("--ngram", type=int, default=13, help="contamination: word n-gram length")
    evaluate.add_argument("--cosine", type=float, default=0.9, help="contamination: embedding threshold")
    evaluate.add_argument("--per-band", type=int, default=20, help="diversity: persona pairs per band")
    evaluate.add_argument("--data-type", default="math_problem", help="diversity: what to synthesize")
    evaluate.add_argument("--date", nargs="+", dest="dates", help="only these daily partitions")
    evaluate.add_argument("--lake")
    evaluate.set_defaults(func=cmd_evaluate)

    report = sub.add_parser("report", help="write the self-contained HTML dataset report")
    report.add_argument("--out", help="a local file (default: reports/<date or all>.html in the lake)")
    report.add_argument("--date", help="one daily partition (default: every day)")
    report.add_argument("--lake")
    report.set_defaults(func=cmd_report)

    sql = sub.add_parser("sql", help="run DuckDB SQL over the lake's tables")
    sql.add_argument("query")
    sql.add_argument("--lake")
    sql.add_argument("--max-rows", type=int, default=40)
    sql.add_argument("--as-of", help="the lake as it was: a timestamp, or TABLE=VERSION,…")
    sql.set_defaults(func=cmd_sql)

    lake = sub.add_parser("lake", help="Delta versions and history, compaction + vacuum, conversion")
    lake.add_argument("action", choices=["versions", "history", "optimize", "migrate"])
    lake.add_argument("table", nargs="?", help="history: the table")
    lake.add_argument("--limit", type=int, default=20, help="history: commits shown")
    lake.add_argument(
        "--retention-hours",
        type=float,
        default=168.0,
        help="optimize: keep files that versions of the last H hours read (time travel reaches that far)",
    )
    lake.add_argument("--lake")
    lake.set_defaults(func=cmd_lake)

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

    current = sub.add_parser("settings", help="every PERSONAHUB_* setting: its value here, or the table")
    current.add_argument("--table", action="store_true", help="the markdown table of docs/settings.md")
    current.set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    from personahub_dagster.core.llm.cache.records import CacheError
    from personahub_dagster.core.storage.location import StorageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (StorageError, CacheError, SettingsError) as exc:  # unusable as configured: one line
        print(f"personahub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
