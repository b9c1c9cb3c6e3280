"""Consecutive nights of the whole pipeline against the local fake OpenAI server, each night in a process
of its own, measured per step: seconds, what the lake's queries read (files opened, rows scanned), and
the night's peak RSS. Used by ``benchmarks/nights.py`` and by the test that fails when a daily step
reads history.

Texts are generated, distinct per night, with a few re-crawled documents of the night before; the
fake provider answers every prompt deterministically from its content: a persona made of words drawn
by the prompt's hash (so personas are diverse, with the near-duplicates a real model also makes), a
math problem, its solution, and a short text for the other data types.

    python -m tests.support.nights --day 2026-01-01 --lake L --inbox I --api-base URL --out night.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TRAITS = [
    "patient",
    "retired",
    "ambitious",
    "curious",
    "stubborn",
    "generous",
    "pragmatic",
    "self-taught",
    "outspoken",
    "methodical",
]
JOBS = [
    "welder",
    "nurse",
    "pianist",
    "actuary",
    "beekeeper",
    "pilot",
    "chemist",
    "librarian",
    "carpenter",
    "midwife",
    "surveyor",
    "glassblower",
    "cartographer",
    "paramedic",
    "sommelier",
    "locksmith",
    "translator",
    "veterinarian",
    "archivist",
    "geologist",
    "electrician",
    "baker",
    "bookbinder",
    "firefighter",
    "dentist",
    "ornithologist",
    "plumber",
    "statistician",
    "tailor",
    "blacksmith",
    "pharmacist",
]
PLACES = [
    "Oslo",
    "Lima",
    "Nairobi",
    "Lisbon",
    "Hanoi",
    "Quebec",
    "Tucson",
    "Galway",
    "Perth",
    "Cusco",
    "Bergen",
    "Dakar",
    "Tbilisi",
    "Porto",
    "Kyoto",
]
HOBBIES = [
    "restores vintage motorcycles",
    "breeds tropical fish",
    "coaches a youth rugby team",
    "writes detective novels at night",
    "grows heirloom tomatoes",
    "volunteers at an animal shelter",
    "collects antique maps",
    "builds model railways",
    "repairs old radios",
    "photographs migrating birds",
]
TOPICS = [
    "soil erosion on hillside farms",
    "the history of harbour cranes",
    "caring for sourdough starters",
    "budgeting for a first apartment",
    "night shifts in emergency rooms",
    "tuning a second-hand piano",
    "winter beekeeping",
    "repairing drystone walls",
]


def texts_for(day: str, night: int, n: int) -> list[dict]:
    """``n`` documents for the night: fresh ones, and 1 in 20 re-crawled from the night before."""
    rng = random.Random(day)
    docs = []
    for i in range(n):
        source = night - 1 if night > 0 and i % 20 == 0 else night
        r = random.Random(f"{source}:{i}")
        topic, job, place = r.choice(TOPICS), r.choice(JOBS), r.choice(PLACES)
        body = (
            f"Field notes {source}-{i} from {place}: a {job} writes about {topic}. "
            f"After {r.randint(2, 40)} years of work the lessons are {r.choice(HOBBIES)} and patience; "
            f"entry {rng.random():.6f} lists the tools, the costs and the mistakes made along the way."
        )
        if source != night:  # a re-crawl: the same text as the night before
            body = body.split(" entry ")[0]
        docs.append({"id": f"{source}-{i}", "text": body})
    return docs


def fake_llm(_n: int, body: dict) -> tuple[str, str]:
    """The provider: the same prompt always gets the same answer, made from the prompt's hash."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    prompt = body["messages"][-1]["content"]
    h = int(hashlib.sha256(prompt.encode()).hexdigest()[:12], 16)
    pick = lambda items, k: items[(h >> k) % len(items)]  # noqa: E731
    if system.startswith("You are an expert at describing people"):
        return "ok", (
            f"A {pick(TRAITS, 0)} {pick(JOBS, 5)} from {pick(PLACES, 11)} who {pick(HOBBIES, 17)} "
            f"and keeps notebook {h % 997}."
        )
    if "math teacher" in system:
        a, b = 3 + h % 17, 2 + (h >> 8) % 11
        return "ok", f"Math problem: A {pick(JOBS, 5)} packs {a} crates with {b} jars each. How many jars?"
    if "mathematician" in system:
        nums = [int(x) for x in prompt.split() if x.isdigit()]
        total = nums[0] * nums[1] if len(nums) >= 2 else 42
        return "ok", f"Multiply the two numbers.\nFinal answer: \\boxed{{{total}}}"
    if system.startswith("You describe people precisely"):  # persona attributes
        job = next((j for j in JOBS if j in prompt), "unknown")
        return "ok", json.dumps({"domain": "unknown", "occupation": job, "expertise_level": "expert"})
    if system.startswith("You name groups"):
        return "ok", f"{pick(JOBS, 5)}s and their circles"
    if "JSON" in system:
        return "ok", json.dumps({"name": f"{pick(JOBS, 5)}_helper_{h % 97}", "description": "A helper."})
    return "ok", f"A {pick(JOBS, 5)} asks how to plan {pick(TOPICS, 9)} within a budget of {h % 500} euros."


PIPELINE_CONFIG = {
    "raw_texts": {"config": {"max_texts": None}},
    "text_personas": {"config": {"perspectives": ["read", "write"]}},
    "expanded_personas": {"config": {"hops": 2}},
    "diversity_bands": {"config": {"per_band": 2}},
}


def run_config(personas_per_type: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from personahub_dagster.defs.stages.synthesis import registry

    ops = {k: json.loads(json.dumps(v)) for k, v in PIPELINE_CONFIG.items()}
    for dt in registry().values():
        ops[dt.asset] = {"config": {"n_personas": personas_per_type, "modes": ["zero_shot"]}}
    return {"ops": ops}


def night(work: Path, day: str, night_no: int, texts: int, base_url: str, personas_per_type: int = 8) -> dict:
    """One night, in a process of its own: the day's texts into the inbox, then the whole pipeline."""
    from personahub_dagster.core.stages.inbox import register

    docs = work / f"texts-{day}.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in texts_for(day, night_no, texts)))
    register(docs, work / "inbox", day)
    out = work / f"night-{day}.json"
    env = {
        **os.environ,
        "PERSONAHUB_LAKE": str(work / "lake"),
        "PERSONAHUB_INBOX": str(work / "inbox"),
        "PERSONAHUB_MODEL": "openai/fake",
        "PERSONAHUB_API_BASE": base_url,
        "PERSONAHUB_API_KEY": "sk-nights",
        "PERSONAHUB_CONCURRENCY": "32",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DAGSTER_HOME", None)
    cmd = [sys.executable, "-m", "tests.support.nights", "--day", day, "--out", str(out),
           "--personas", str(personas_per_type)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"night {day} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(out.read_text())


def _run(day: str, out: Path, personas_per_type: int) -> None:
    """In the night's process: the job for the day, with a hook that takes each step's reads."""
    import dagster as dg

    from personahub_dagster.core.lake.metering import lake_reads
    from personahub_dagster.definitions import defs

    reads: dict[str, dict[str, int]] = {}
    last = [lake_reads()]

    @dg.success_hook
    def measure(context) -> None:
        now = lake_reads()
        reads[context.op.name] = {k: now[k] - last[0][k] for k in now}
        reads[context.op.name]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        last[0] = now

    job = defs().resolve_job_def("persona_hub_pipeline").with_hooks({measure})
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = job.execute_in_process(
        run_config=run_config(personas_per_type), instance=instance, partition_key=day
    )
    wall = time.perf_counter() - started
    begin, seconds = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            begin[entry.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds[entry.step_key] = entry.timestamp - begin[entry.step_key]
    metadata = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        metadata[event.step_key] = {
            k: v.value for k, v in mat.metadata.items() if k in ("hub_kept", "hub_personas")
        }
    out.write_text(
        json.dumps(
            {
                "day": day,
                "wall_s": wall,
                "seconds": seconds,
                "reads": reads,
                "hub": metadata.get("persona_hub", {}),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--personas", type=int, default=8)
    args = ap.parse_args()
    _run(args.day, args.out, args.personas)
