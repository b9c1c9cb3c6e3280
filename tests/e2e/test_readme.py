"""Every shell command README.md shows (and docs/ blocks marked ``<!-- runnable -->``) runs as written, so
the README cannot rot: a lake built by one night of the whole pipeline (against the local fake provider,
the README's own way of pointing the pipeline at another model), the files the commands name made in a
working folder, dates and timestamps filled from that lake, each command run with a timeout and failed on
a non-zero exit or a traceback. Usage lines (``personahub demo [--date D] …``) are checked against the
command's help — every option they name exists — and run in their shortest form with their placeholders
filled (a day, a row id, a pair id, a table). What cannot run here is marked with its reason: ``make``
targets that are the whole suite or pipeline run as dry runs, and ``make ui`` is started and answered."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from personahub_dagster.core.lake.tables import Lake
from tests.support.fake_openai import FakeOpenAI
from tests.support.nights import fake_llm, night, texts_for
from tests.support.readme import Command, commands

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-11-24"
BIN = Path(sys.executable).parent
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DRY_RUN = {"demo", "test", "bench", "install", "lint"}  # the whole pipeline or suite: `make -n` only
HEAVY = {("personahub", "demo")}  # a usage line: the README's demo commands run as written instead


def _inputs(work: Path) -> None:
    """The files the README's commands read, made small."""
    people = [
        "A retired welder who restores old motorbikes.",
        "A retired welder who restores old motorbikes!",
        "A night-shift nurse who cares for premature babies.",
    ]
    (work / "released.jsonl").write_text("".join(json.dumps({"persona": p}) + "\n" for p in people))
    pl.DataFrame({"persona": ["A teacher of chemistry in a rural high school.", people[0]]}).write_parquet(
        work / "day2.parquet"
    )
    problems = [{"problem": "A farmer has 12 hens. How many eggs in 3 days?", "text": "12 hens"}]
    (work / "math_test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    for name, day, n in (
        ("crawl-2026-11-24.jsonl", "x1", 2),
        ("my.jsonl", "x2", 2),
        ("my_texts.jsonl", "x3", 1),
    ):
        (work / name).write_text("".join(json.dumps(d) + "\n" for d in texts_for(day, 7, n)))
    pl.DataFrame([texts_for("x4", 8, 1)[0]]).write_parquet(work / "more.parquet")
    (work / "notes").mkdir()
    (work / "notes" / "note.txt").write_text(texts_for("x5", 9, 1)[0]["text"])


def _strip_optional(argv: list[str]) -> list[str]:
    out, depth = [], 0
    for token in argv:
        if token.startswith("["):
            depth += token.count("[")
        if not depth:
            out.append(token)
        if depth:
            depth -= token.count("]")
    return out


def _alternatives(argv: list[str]) -> list[list[str]]:
    parts, current = [], []
    for token in argv:
        if token == "|":
            parts.append(current)
            current = []
        else:
            current.append(token)
    parts.append(current)
    prefix = parts[0][:2]
    return [p if p[0].endswith("personahub") else prefix + p for p in parts]


def _fill(argv: list[str], ids: dict[str, str], n: int) -> list[str] | None:
    """The placeholders of a usage line filled from the lake (an output of its own for the ``n``-th), or
    None when one cannot be."""
    values = {
        "ID": ids["row"],
        "TABLE": "hub",
        "TYPE": "math",
        "OUT": f"usage-out-{n}",
        "FILE…": "math_test.jsonl",
        "FILE": "math_test.jsonl",
        "SELECT …": "SELECT count(*) FROM hub",
    }
    out = []
    for token in argv:
        if token in values:
            out.append(values[token])
        elif "…" in token or re.fullmatch(r"[A-Z]+", token):
            return None
        else:
            out.append(token)
    return out


def _ids(lake: Lake) -> dict[str, str]:
    """A generated row's id and, when the day made one, a preference pair's."""
    ids = {"row": lake.read("generations")["row_id"].sort()[0]}
    pairs = lake.read("preference_pairs") if "preference_pairs" in lake.counts() else None
    if pairs is not None and pairs.height:
        ids["pair"] = pairs["pair_id"].sort()[0]
    return ids


class Runner:
    def __init__(self, work: Path, env: dict[str, str], now: str):
        self.work, self.env, self.now = work, env, now
        self.ran: list[str] = []
        self.marked: list[str] = []

    def run(
        self,
        argv: list[str],
        where: str,
        timeout: int = 600,
        env: dict | None = None,
        cwd: Path | None = None,
    ) -> str:
        argv = [self.now if STAMP.fullmatch(a) else DAY if DATE.fullmatch(a) else a for a in argv]
        if argv[0] in ("personahub", ".venv/bin/personahub"):
            argv = [str(BIN / "personahub"), *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        done = subprocess.run(
            argv,
            cwd=cwd or self.work,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        said = done.stdout + done.stderr
        assert done.returncode == 0 and "Traceback" not in said, f"{where}: {' '.join(argv)}\n{said[-3000:]}"
        self.ran.append(f"{where}: {' '.join(argv)}")
        return said

    def usage(self, command: Command, ids: dict[str, str]) -> None:
        for alternative in _alternatives(command.argv):
            words = [t for t in alternative[1:] if not t.startswith(("-", "["))]
            helped = None
            for k in range(len(words), -1, -1):  # the longest command path --help answers
                done = subprocess.run(
                    [str(BIN / "personahub"), *words[:k], "--help"],
                    capture_output=True,
                    text=True,
                    env=self.env,
                )
                if done.returncode == 0:
                    helped = done.stdout
                    break
            options = [t.strip("[]") for t in alternative if t.strip("[]").startswith("--")]
            missing = [o for o in options if o not in helped]
            assert not missing, f"{command.source}: {missing} not in `{' '.join(words[:k])} --help`"
            if tuple(alternative[:2]) in HEAVY:
                self.marked.append(
                    f"{command.source}: {' '.join(alternative)} (help only: the demo runs as written above)"
                )
                continue
            filled = _fill(_strip_optional(alternative), ids, len(self.ran))
            if filled is None:
                self.marked.append(f"{command.source}: {' '.join(alternative)} (help only: a placeholder)")
                continue
            self.run(filled, command.source)
            if filled[1:2] == ["lineage"] and ids.get("pair"):
                self.run([*filled[:2], ids["pair"]], command.source)

    def make(self, command: Command) -> None:
        target = command.argv[1]
        if target in DRY_RUN:
            self.run(["make", "-n", target], command.source, cwd=ROOT)
            self.marked.append(f"{command.source}: make {target} (dry run: the whole pipeline or suite)")
        elif target == "ui":
            self.ui(command)
        else:
            raise AssertionError(f"{command.source}: make {target}: mark how to run it")

    def ui(self, command: Command) -> None:
        server = subprocess.Popen(
            ["make", "ui"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:3000/server_info", timeout=2) as page:
                        assert page.status == 200
                        self.ran.append(f"{command.source}: make ui (answered on 127.0.0.1:3000)")
                        return
                except OSError:
                    assert server.poll() is None, f"{command.source}: make ui exited {server.returncode}"
                    time.sleep(2)
            raise AssertionError(f"{command.source}: make ui did not answer in 240 s")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)

    def settings(self, command: Command) -> None:
        assigned = dict(a.split("=", 1) for a in command.argv[1:])
        said = self.run(["personahub", "settings"], command.source, env=assigned)
        unknown = [k for k in assigned if k.startswith("PERSONAHUB_") and k not in said]
        assert not unknown, f"{command.source}: {unknown} are not settings"


@pytest.mark.e2e
def test_every_readme_command_runs_as_written(tmp_path):
    found = commands(ROOT / "README.md")
    found += [c for doc in sorted((ROOT / "docs").glob("*.md")) for c in commands(doc, marked_only=True)]
    work = tmp_path / "work"
    work.mkdir()
    _inputs(work)
    licensed = work / "inbox" / DAY / "licensed.jsonl"  # texts under an open licence, for `publish --license`
    licensed.parent.mkdir(parents=True)
    licensed.write_text(
        "".join(json.dumps({**d, "license": "cc-by-4.0"}) + "\n" for d in texts_for("cc", 5, 3))
    )
    with FakeOpenAI(fake_llm) as server:
        night(work, DAY, 0, 6, server.base_url, personas_per_type=2)
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PERSONAHUB_LAKE": str(work / "lake"),
            "PERSONAHUB_INBOX": str(work / "inbox"),
            "PERSONAHUB_MODEL": "openai/fake",
            "PERSONAHUB_API_BASE": server.base_url,
            "PERSONAHUB_API_KEY": "sk-readme",
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HF_HUB_OFFLINE": "1",
        }
        (tmp_path / "dagster_home").mkdir()
        runner = Runner(work, env, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        for command in found:
            head = command.argv[0]
            if head == "make":
                runner.make(command)
            elif head == "export":
                runner.settings(command)
            elif head.endswith("personahub") and command.synopsis:
                runner.usage(command, _ids(Lake(work / "lake")))  # read now: a demo may have re-run the day
            elif head.endswith("personahub") or head == "python":
                runner.run(command.argv, command.source)
            else:
                raise AssertionError(f"{command.source}: `{command.line}`: mark how to run it")
    print(
        f"\nREADME commands: {len(found)} found, {len(runner.ran)} runs, {len(runner.marked)} marked\n"
        + "\n".join(f"  ran {r}" for r in runner.ran)
        + "\n"
        + "\n".join(f"  marked {m}" for m in runner.marked)
    )
    assert len(runner.ran) >= 30
