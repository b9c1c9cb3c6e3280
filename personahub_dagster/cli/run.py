"""Running the pipeline and taking its data out: ``demo``, ``inbox``, ``export``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from personahub_dagster.cli.common import inbox_path, open_lake, print_counts, today
from personahub_dagster.core.config.settings import settings

# What `personahub demo` runs the stages after the hub at, so a first look takes minutes on a laptop CPU
# with the embedded model; `--full` runs them at their asset defaults (docs/performance.md#first-run).
DEMO_SIZES: dict[str, dict[str, object]] = {
    "persona_attributes": {"max_personas": 16},
    "persona_fidelity": {"sample_rows": 30, "lift_rows": 1},
    "verifiable_instructions": {"n_personas": 3},
    "conversations": {"n_personas": 1, "turns": 2},
    "preference_pairs": {"n_rows": 4},
}


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from personahub_dagster.core.stages.inbox import register
    from personahub_dagster.core.stages.prompts import bundled_assets_dir

    if args.lake:
        os.environ["PERSONAHUB_LAKE"] = args.lake
    from personahub_dagster.definitions import defs

    day = args.date or today()
    ops: dict[str, dict] = {}
    raw: dict[str, object] = {}
    if args.corpus:
        raw["paths"] = [str(Path(p).resolve()) for p in args.corpus]
    else:  # the bundled sample arrives like any day's data: in the inbox
        register(bundled_assets_dir() / "corpus" / "sample.jsonl", inbox_path(), day)
    if args.texts is not None:
        raw["max_texts"] = args.texts if args.texts > 0 else None
    if raw:
        ops["raw_texts"] = {"config": raw}
    if args.hops is not None:
        ops["expanded_personas"] = {"config": {"hops": args.hops}}
    if args.personas is not None:
        from personahub_dagster.defs.stages.synthesis import registry

        for dt in registry().values():
            ops[dt.asset] = {"config": {"n_personas": args.personas}}
    if not args.full:  # a first look: the stages after the hub on a few personas and rows each
        for op, sizes in DEMO_SIZES.items():
            ops.setdefault(op, {"config": {}})["config"].update(sizes)
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
    lake = open_lake(None)
    if not result.success:
        print(
            f"\nThe pipeline failed after {elapsed:.0f} s; see the log above. Lake: {lake.uri}",
            file=sys.stderr,
        )
        return 1
    print(f"\nPersona Hub demo (partition {day}) finished in {elapsed:.0f} s.\n")
    print_counts(lake)
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


def cmd_inbox(args: argparse.Namespace) -> int:
    from personahub_dagster.core.stages.inbox import fingerprints, register

    inbox = inbox_path(args.inbox)
    if args.action == "add":
        day = args.date or today()
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
    from personahub_dagster.core.lake.export import export_frame, rlvr_frame, sft_frame, write_export
    from personahub_dagster.core.stages.data_types import load_data_types
    from personahub_dagster.core.stages.provenance import wanted_licenses
    from personahub_dagster.core.stages.verifiable import DATA_TYPE

    types = load_data_types(settings().prompts_dir)
    names = {k: (dt.name, dt.description) for dt in types.values() for k in (dt.name, dt.asset, dt.release)}
    names.update({k: (DATA_TYPE, "verifiable instruction") for k in (DATA_TYPE, "verifiable_instructions")})
    if args.type not in names:
        choices = ", ".join([*types, DATA_TYPE])
        print(f"export: unknown data type {args.type!r}; choose one of {choices}", file=sys.stderr)
        return 2
    name, description = names[args.type]
    if args.format == "rlvr" and name != DATA_TYPE:
        print(f"export: --format rlvr is for --type {DATA_TYPE}", file=sys.stderr)
        return 2
    wanted = wanted_licenses(args.licenses) if args.licenses else None
    df = export_frame(
        open_lake(args.lake),
        name,
        args.mode,
        args.agreed_only,
        args.dates,
        args.include_contaminated,
        wanted,
    )
    mix = ", ".join(
        f"{k} {n}" for k, n in df.group_by("license").len().sort("len", descending=True).iter_rows()
    )
    fmt = args.format
    if fmt in ("rlvr", "sft"):
        df, fmt = (rlvr_frame if fmt == "rlvr" else sft_frame)(df), None
    elif not args.all_columns:
        df = df.drop("constraints", *([] if name == "math_problem" else ["agreement", "answer"]))
        df = df if args.include_contaminated else df.drop("contaminated")
    path = write_export(df, args.out, fmt)
    print(f"{df.height} {description} rows → {path}" + (f" (licences: {mix})" if df.height else ""))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from personahub_dagster.core.lake.card import publish
    from personahub_dagster.core.stages.data_types import load_data_types
    from personahub_dagster.core.stages.provenance import wanted_licenses
    from personahub_dagster.core.stages.verifiable import DATA_TYPE

    releases = {dt.name: dt.release for dt in load_data_types(settings().prompts_dir).values()}
    releases[DATA_TYPE] = DATA_TYPE
    wanted = wanted_licenses(args.licenses) if args.licenses else None
    try:
        done = publish(open_lake(args.lake), args.out, releases, args.dates, wanted, args.name)
    except ValueError as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    configs = ", ".join(f"{c} {n}" for c, n in done.configs.items())
    print(f"{sum(done.configs.values())} rows → {done.folder} ({configs}); card: {done.folder / 'README.md'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    demo.add_argument(
        "--full",
        action="store_true",
        help="the stages after the hub at their full sizes (attributes for every persona, more pairs, "
        "conversations and fidelity rows); without it they run on a few, for a first look in minutes",
    )
    demo.set_defaults(func=cmd_demo)
    inbox = sub.add_parser("inbox", help="register files as a day's raw text, or list the days")
    inbox.add_argument("action", choices=["add", "list"])
    inbox.add_argument("files", nargs="*", help="JSONL / Parquet / text files (add)")
    inbox.add_argument("--date", help="the day's partition, YYYY-MM-DD (default: today)")
    inbox.add_argument("--inbox", help="inbox folder (default $PERSONAHUB_INBOX or ./inbox)")
    inbox.set_defaults(func=cmd_inbox)
    export = sub.add_parser("export", help="write a data type in the PersonaHub release format")
    export.add_argument("--type", required=True, help="data type, asset or release name (math, tool, …)")
    export.add_argument(
        "--format",
        choices=["jsonl", "parquet", "rlvr", "sft"],
        help="jsonl or parquet: the release columns in that file type (default: from the file suffix); "
        "rlvr: open-instruct's RLVR rows (messages, ground_truth, dataset) of verifiable instructions; "
        "sft: messages (the prompt, then the row); both written as the file suffix says",
    )
    export.add_argument("--mode", nargs="+", help="only these prompting modes")
    export.add_argument("--agreed-only", action="store_true", help="math: agreed solutions only")
    export.add_argument("--all-columns", action="store_true", help="also the constraints column")
    export.add_argument("--date", nargs="+", dest="dates", help="only these daily partitions")
    export.add_argument(
        "--include-contaminated", action="store_true", help="keep rows a contamination check flagged"
    )
    export.add_argument(
        "--license",
        nargs="+",
        dest="licenses",
        help="only rows whose source text is under these licences (SPDX ids; commercial-safe: the "
        "permissive list in core/stages/provenance.py; unknown only when named)",
    )
    export.add_argument("--lake")
    export.add_argument("out", help="output file")
    export.set_defaults(func=cmd_export)
    publish = sub.add_parser(
        "publish", help="every data type as Parquet shards with a dataset card, for the Hugging Face Hub"
    )
    publish.add_argument("out", help="the folder to write (README.md card + <config>/data-*.parquet)")
    publish.add_argument("--date", nargs="+", dest="dates", help="only these daily partitions")
    publish.add_argument("--license", nargs="+", dest="licenses", help="only rows under these licences")
    publish.add_argument("--name", default="PersonaHub synthetic data", help="the card's title")
    publish.add_argument("--lake")
    publish.set_defaults(func=cmd_publish)
