"""Measuring what was made: ``evaluate diversity`` / ``contamination`` / ``fidelity``, ``report``."""

from __future__ import annotations

import argparse
import sys

import polars as pl

from personahub_dagster.cli.common import open_lake, today
from personahub_dagster.core.config.settings import settings


def cmd_evaluate(args: argparse.Namespace) -> int:
    from personahub_dagster.core.evaluation.contamination import check_contamination, load_benchmark
    from personahub_dagster.core.hub.embedder import Embedder

    lake = open_lake(args.lake)
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
        if args.what == "fidelity":
            return _evaluate_fidelity(args, lake, embedder, built.llm, built.prompts)
        return _evaluate_diversity(args, lake, embedder, built.llm, built.prompts)


def _evaluate_fidelity(args: argparse.Namespace, lake, embedder, llm, prompts) -> int:
    from personahub_dagster.core.evaluation.fidelity import FidelityConfig, day_fidelity
    from personahub_dagster.core.hub.sample import hub_sample, sample_vectors

    day = args.dates[0] if args.dates else today()
    sample = hub_sample(lake)
    generations = lake.read("generations", partitions=[day])
    if sample is None or sample.is_empty() or generations.is_empty():
        print(f"evaluate fidelity: {lake.uri} has no hub or no generated rows on {day}", file=sys.stderr)
        return 2
    templates = prompts.templates_of(generations["data_type"].unique())
    out, unmatched = day_fidelity(
        generations,
        lake.read("hub", partitions=args.dates or [day]),
        sample,
        sample_vectors(sample),
        embedder,
        llm.gateway(lake),
        templates,
        FidelityConfig(sample_rows=args.sample_rows, candidates=args.candidates, lift_rows=args.lift_rows),
        day,
        prompts.template("persona_judge") if args.judge else None,
    )
    lake.write_many(
        {"persona_fidelity": out.rows, "rejects": out.rejects}, producer="persona_fidelity", partition=day
    )
    wide = out.rows.pivot("metric", index=["data_type", "prompting_mode"], values="value")
    print(wide.with_columns(pl.col(pl.Float64).round(3)) if wide.height else "nothing measured")
    if unmatched:
        print(f"{unmatched} rows not measured: their personas are not in the hub of {args.dates or [day]}")
    return 0


def _evaluate_diversity(args: argparse.Namespace, lake, embedder, llm, prompts) -> int:
    from personahub_dagster.core.evaluation.diversity import band_summary, diversity
    from personahub_dagster.core.hub.sample import hub_sample, sample_vectors

    day = args.dates[0] if args.dates else today()
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

    lake = open_lake(args.lake)
    path = write_report(lake, args.out, args.date, settings().prompts_dir)
    print(f"report → {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="diversity bands, contamination against a benchmark, or persona fidelity"
    )
    evaluate.add_argument("what", choices=["diversity", "contamination", "fidelity"])
    evaluate.add_argument("--against", nargs="+", help="contamination: benchmark JSONL / Parquet files")
    evaluate.add_argument("--text-field", default="text", help="the benchmark's text column (MATH: problem)")
    evaluate.add_argument("--ngram", type=int, default=13, help="contamination: word n-gram length")
    evaluate.add_argument("--cosine", type=float, default=0.9, help="contamination: embedding threshold")
    evaluate.add_argument("--per-band", type=int, default=20, help="diversity: persona pairs per band")
    evaluate.add_argument("--data-type", default="math_problem", help="diversity: what to synthesize")
    evaluate.add_argument("--sample-rows", type=int, default=200, help="fidelity: generated rows measured")
    evaluate.add_argument("--candidates", type=int, default=10, help="fidelity: k for persona retrieval")
    evaluate.add_argument("--lift-rows", type=int, default=20, help="fidelity: rows per type asked again")
    evaluate.add_argument("--judge", action="store_true", help="fidelity: also an LLM judge's 1-5 score")
    evaluate.add_argument(
        "--date",
        nargs="+",
        dest="dates",
        help="only these daily partitions (fidelity: the first is measured)",
    )
    evaluate.add_argument("--lake")
    evaluate.set_defaults(func=cmd_evaluate)
    report = sub.add_parser("report", help="write the self-contained HTML dataset report")
    report.add_argument("--out", help="a local file (default: reports/<date or all>.html in the lake)")
    report.add_argument("--date", help="one daily partition (default: every day)")
    report.add_argument("--lake")
    report.set_defaults(func=cmd_report)
