"""Options anywhere: every command reads its options before, between or after its positional arguments
(``inbox add --date D FILE`` and ``inbox --date D add FILE`` alike), and each command's help shows one
usage line."""

from __future__ import annotations

import argparse

import pytest

from personahub_dagster.cli import build_parser, main

ORDERS = [
    (
        ["inbox", "add", "--date", "2026-10-01", "a.txt", "b.txt"],
        ["inbox", "--date", "2026-10-01", "add", "a.txt", "b.txt"],
    ),
    (
        ["inbox", "add", "a.txt", "--date", "2026-10-01", "b.txt"],
        ["inbox", "--date", "2026-10-01", "add", "a.txt", "b.txt"],
    ),
    (
        ["export", "out.jsonl", "--type", "math", "--format", "rlvr"],
        ["export", "--type", "math", "--format", "rlvr", "out.jsonl"],
    ),
    (["lineage", "g-1", "--lake", "L"], ["lineage", "--lake", "L", "g-1"]),
    (["sql", "SELECT 1", "--max-rows", "3"], ["sql", "--max-rows", "3", "SELECT 1"]),
    (["lake", "history", "hub", "--limit", "2"], ["lake", "--limit", "2", "history", "hub"]),
    (
        ["publish", "out", "--date", "2026-10-01", "--name", "x"],
        ["publish", "--date", "2026-10-01", "--name", "x", "out"],
    ),
    (["dedup", "in.jsonl", "--out", "o.jsonl"], ["dedup", "--out", "o.jsonl", "in.jsonl"]),
]


def _args(argv: list[str]) -> dict:
    return {k: v for k, v in vars(build_parser().parse_args(argv)).items() if k != "func"}


@pytest.mark.parametrize(("after", "before"), ORDERS)
def test_options_after_the_positionals_mean_the_same(after, before):
    assert _args(after) == _args(before)


def test_inbox_add_with_the_date_after_the_action(tmp_path, capsys):
    text = tmp_path / "note.txt"
    text.write_text("A note long enough to be a text.")
    inbox = tmp_path / "inbox"
    assert main(["inbox", "add", "--date", "2026-10-01", str(text), "--inbox", str(inbox)]) == 0
    assert (inbox / "2026-10-01" / "note.txt").exists()


def _leaves(parser: argparse.ArgumentParser):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for child in action.choices.values():
            yield from _leaves(child)


def test_every_command_has_one_usage():
    leaves = list(_leaves(build_parser()))
    assert len(leaves) >= 12
    for leaf in leaves:
        usage = leaf.format_usage()
        assert usage.count("usage:") == 1 and leaf.prog.startswith("personahub"), usage
