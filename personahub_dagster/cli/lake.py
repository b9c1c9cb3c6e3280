"""Looking into the lake: ``stats``, ``lineage``, ``sql``, and ``lake`` (versions, history,
compaction, conversion)."""

from __future__ import annotations

import argparse
import datetime
import sys
import textwrap

from personahub_dagster.cli.common import open_lake, parse_as_of, print_counts

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
    lake = open_lake(args.lake)
    if not lake.exists():
        print(f"no lake at {lake.uri}; run `personahub demo` first", file=sys.stderr)
        return 1
    print_counts(lake)
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
    lake = open_lake(args.lake)
    try:
        steps = lake.lineage(args.id, parse_as_of(args.as_of))
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

    lake = open_lake(args.lake)
    try:
        as_of = parse_as_of(args.as_of)
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


def cmd_lake(args: argparse.Namespace) -> int:
    from personahub_dagster.core.lake.migrate import migrate

    lake = open_lake(args.lake)
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser("stats", help="row counts per table and breakdowns")
    stats.add_argument("--lake")
    stats.set_defaults(func=cmd_stats)
    lineage = sub.add_parser("lineage", help="trace a generated row (or persona) back to its source text")
    lineage.add_argument("id", help="a row_id (g-…), persona_id (p-…) or text_id (t-…)")
    lineage.add_argument("--lake")
    lineage.add_argument("--width", type=int, default=400, help="characters of text shown per step")
    lineage.add_argument("--as-of", help="the lake as it was: a timestamp, or TABLE=VERSION,…")
    lineage.set_defaults(func=cmd_lineage)
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
