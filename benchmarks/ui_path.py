"""One day's "Materialize all", four ways, same day, same corpus, each on a fresh lake and cache:

* **CLI** — ``personahub demo``: every step in one process, one after the other (the baseline);
* **UI path, multiprocess, no pools** — the job as the UI launched it before: Dagster's multiprocess
  executor, an instance without pools (the earlier empty ``dagster.yaml``);
* **UI path, multiprocess, pools** — the same with ``deploy/local/dagster.yaml`` (what ``make install``
  now puts in ``DAGSTER_HOME``): the ``llm`` pool runs one LLM step at a time;
* **UI path, as shipped** — pools, and the executor the definitions now pick for the embedded model:
  one process (``defs/executor.py``).

The UI path is timed through ``dagster job execute`` (the run the UI's button launches, without the
browser). On a small machine two LLM steps at once means two llama.cpp processes on the same cores;
the table shows the wall time and the slowest LLM step of each way.

    python benchmarks/ui_path.py [--texts 4] [--hops 2] [--personas 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2026-03-01"


def run_config(texts: int, hops: int, personas: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from personahub_dagster.defs.stages.synthesis import registry

    ops: dict[str, dict] = {
        "raw_texts": {"config": {"max_texts": texts}},
        "expanded_personas": {"config": {"hops": hops}},
    }
    for dt in registry().values():
        ops[dt.asset] = {"config": {"n_personas": personas}}
    return {"ops": ops}


def step_times(home: Path) -> dict[str, float]:
    """Seconds per step of the one run in the instance at ``home`` (from its event log)."""
    code = """
import json, dagster as dg
from dagster import DagsterEventType as T
inst = dg.DagsterInstance.get()
run = inst.get_runs()[0]
start, out = {}, {}
for e in inst.all_logs(run.run_id):
    ev = e.dagster_event
    if ev is None or not e.step_key:
        continue
    if ev.event_type == T.STEP_START:
        start[e.step_key] = e.timestamp
    elif ev.event_type in (T.STEP_SUCCESS, T.STEP_FAILURE):
        out[e.step_key] = e.timestamp - start[e.step_key]
print(json.dumps(out))
"""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=4)
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--personas", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ui-path-"))
    inbox = work / "inbox"
    base_env = {
        **os.environ,
        "PERSONAHUB_INBOX": str(inbox),
        "PERSONAHUB_START_DATE": "2026-01-01",
        "HF_HUB_OFFLINE": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    for key in ("PERSONAHUB_CACHE", "PERSONAHUB_EXECUTOR", "PERSONAHUB_MODEL", "PERSONAHUB_SHARDS"):
        base_env.pop(key, None)
    config = work / "run_config.json"
    config.write_text(json.dumps(run_config(args.texts, args.hops, args.personas)))
    llm_names = llm_steps()
    rows = []
    local = ROOT / "deploy/local/dagster.yaml"
    for name, instance_yaml, cli, executor in (
        ("CLI (personahub demo, in-process)", local, True, None),
        ("UI path, multiprocess, no pools (before)", None, False, "multiprocess"),
        ("UI path, multiprocess, pools", local, False, "multiprocess"),
        ("UI path as shipped (pools, one process)", local, False, None),
    ):
        home, lake = work / f"home-{len(rows)}", work / f"lake-{len(rows)}"
        home.mkdir()
        if instance_yaml:
            shutil.copy(instance_yaml, home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("")
        env = {**base_env, "DAGSTER_HOME": str(home), "PERSONAHUB_LAKE": str(lake)}
        if executor:
            env["PERSONAHUB_EXECUTOR"] = executor
        if cli:
            cmd = [str(BIN / "personahub"), "demo", "--date", DAY, "--texts", str(args.texts),
                   "--hops", str(args.hops), "--personas", str(args.personas)]  # fmt: skip
        else:
            cmd = [str(BIN / "dagster"), "job", "execute", "-m", "personahub_dagster.definitions",
                   "-j", "persona_hub_pipeline", "-c", str(config),
                   "--tags", json.dumps({"dagster/partition": DAY})]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        steps = step_times(home)
        llm = {k: v for k, v in steps.items() if k in llm_names}
        slowest = max(llm, key=llm.get)
        rows.append((name, wall, sum(llm.values()), slowest, llm[slowest], steps.get("knowledge_texts", 0.0)))
        print(f"  {name}: {wall:.0f} s", flush=True)
    base = rows[0][1]
    print(f"\nOne day, {args.texts} texts, {args.hops} hops, {args.personas} personas per type and mode")
    header = f"{'way':46} {'wall s':>7} {'× CLI':>6} {'LLM steps s':>11} {'knowledge_texts s':>17}"
    print(header + "  slowest LLM step")
    for name, wall, llm_total, slowest, slowest_s, knowledge in rows:
        print(
            f"{name:46} {wall:7.0f} {wall / base:6.2f} {llm_total:11.0f} {knowledge:17.0f}  "
            f"{slowest} {slowest_s:.0f} s"
        )
    shutil.rmtree(work, ignore_errors=True)


def llm_steps() -> set[str]:
    """The steps in the ``llm`` pool, as the definitions declare them."""
    from personahub_dagster.definitions import defs
    from personahub_dagster.defs.llm.pools import LLM_POOL

    nodes = defs().resolve_asset_graph().asset_nodes
    return {n.key.to_user_string() for n in nodes if LLM_POOL in n.pools}


if __name__ == "__main__":
    main()
