"""``personahub``: run the pipeline, trace lineage, show lake statistics.

    personahub demo [--date D] [--corpus PATH…] [--texts N] [--hops H] [--personas N]
                                                            materialize every asset (the Dagster job)
    personahub export --type TYPE [--format F] [--license L…] OUT
                                                            a data type: release columns, or rlvr / sft rows
    personahub publish OUT [--date D…] [--license L…]       Parquet shards + a dataset card (HF datasets)
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
    personahub evaluate fidelity [--date D] [--judge]       did the persona shape its rows?
    personahub report [--out FILE] [--date D]               the self-contained HTML dataset report
    personahub settings [--table]                           every PERSONAHUB_* setting and its value

The lake is ``--lake`` or ``$PERSONAHUB_LAKE``: a folder (default ``./lake``) or ``s3://bucket/prefix``.
``--as-of`` takes a timestamp (``2026-11-29T10:00:00Z``) or ``TABLE=VERSION,…`` as a run's metadata
shows them.
"""

from __future__ import annotations

import argparse
import sys

from personahub_dagster.cli import evaluate, hub, lake, run
from personahub_dagster.cli import settings as settings_command
from personahub_dagster.core.config.settings import SettingsError


class Parser(argparse.ArgumentParser):
    """Options before, between or after the positional arguments of a command, as git and pip take them
    (``inbox add --date D FILE`` and ``inbox --date D add FILE`` alike): a command's own parser — one
    with no subcommands — reads its arguments intermixed."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="personahub", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, lake, hub, evaluate, settings_command):
        group.add_commands(sub)
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
