"""Running real materializations in their own processes (``dagster asset materialize``) against a
lake, an inbox and a fake provider: what the crash, secrets and concurrency tests need to kill a run
process, read what it logged, or run two at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def run_env(tmp: Path, base_url: str | None, **extra: str) -> dict[str, str]:
    """Environment of a run: its own DAGSTER_HOME, lake and inbox under ``tmp``, the fake provider."""
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSONAHUB_LAKE": str(tmp / "lake"),
        "PERSONAHUB_INBOX": str(tmp / "inbox"),
        "PERSONAHUB_START_DATE": "2026-11-01",
    }
    env.pop("PERSONAHUB_API_KEY", None)
    env.update(extra)
    if base_url:
        env.update(PERSONAHUB_MODEL="openai/fake", PERSONAHUB_API_BASE=base_url)
        env.setdefault("PERSONAHUB_API_KEY", "sk-fake-for-tests")
    return env


def init_instance(env: dict[str, str]) -> None:
    """Create the instance's storage once, up front: two runs starting together on a fresh
    DAGSTER_HOME would race to create its SQLite schemas (a Dagster limitation, not the lake's)."""
    import dagster as dg

    dg.DagsterInstance.from_config(env["DAGSTER_HOME"]).dispose()


def materialize(
    select: str, partition: str, env: dict[str, str], config: dict | None = None, **popen: object
) -> subprocess.Popen:
    """Start one run in a new process group (so a test can SIGKILL the run and every step process)."""
    cmd = [DAGSTER, "asset", "materialize", "-m", "personahub_dagster.definitions"]
    cmd += ["--select", select, "--partition", partition]
    if config:
        cmd += ["--config-json", json.dumps(config)]
    return subprocess.Popen(
        cmd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout_s: float = 300) -> str:
    """Wait for a run; its output, or an AssertionError with the output if it failed."""
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out[-5000:]
    return out
