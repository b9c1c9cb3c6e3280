"""Persona fidelity and attributes on the demo: the embedded model (SmolLM2-135M, llama.cpp) and the packaged
embedder, one day of the sample corpus through Text-to-Persona, Persona-to-Persona, the hub, two data types
in two prompting modes, ``persona_attributes`` and ``persona_fidelity``.

The baselines are measured in the same run: chance for retrieval (1/k), and for the lift the same prompts
asked again with a neutral persona ("A person.") and with the hub's most distant persona. Against any other
endpoint, set ``PERSONAHUB_MODEL`` (and its key or ``PERSONAHUB_API_BASE``) and run it again, or run
``personahub evaluate fidelity --date D`` on a day that endpoint generated.

    python benchmarks/persona_fidelity.py [--texts 20] [--personas 48] [--judge]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-06-01"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=20)
    ap.add_argument("--personas", type=int, default=48, help="personas per data type")
    ap.add_argument("--judge", action="store_true", help="also the model's 1-5 adherence score")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fidelity-"))
    os.environ["PERSONAHUB_LAKE"] = str(work / "lake")
    os.environ["PERSONAHUB_INBOX"] = str(work / "inbox")

    import dagster as dg
    import polars as pl

    from personahub_dagster.core.lake.tables import Lake
    from personahub_dagster.core.stages.inbox import register
    from personahub_dagster.definitions import defs

    register(ROOT / "assets" / "corpus" / "sample.jsonl", work / "inbox", DAY)
    types = {"math_problems": "math_problem", "instructions": "instruction"}
    ops = {
        "raw_texts": {"config": {"max_texts": args.texts}},
        "text_personas": {"config": {"perspectives": ["read", "write"]}},
        "expanded_personas": {"config": {"hops": 1}},
        **{a: {"config": {"n_personas": args.personas, "modes": ["zero_shot", "few_shot"]}} for a in types},
        "persona_fidelity": {"config": {"lift_rows": args.personas, "judge": args.judge}},
    }
    steps = [
        "raw_texts",
        "text_personas",
        "expanded_personas",
        "persona_hub",
        "persona_attributes",
        *types,
        "persona_fidelity",
    ]
    job = defs().resolve_job_def("persona_hub_pipeline")
    started = time.monotonic()
    result = job.execute_in_process(
        run_config={"ops": ops},
        partition_key=DAY,
        asset_selection=[dg.AssetKey(s) for s in steps],
        instance=dg.DagsterInstance.ephemeral(),
    )
    elapsed = time.monotonic() - started
    if not result.success:
        sys.exit("the run failed; see the log above")
    seconds = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            seconds[event.step_key] = event.event_specific_data.duration_ms / 1000

    lake = Lake(work / "lake")
    metrics = lake.read("persona_fidelity", partitions=[DAY])
    attributes = lake.read("persona_attributes", partitions=[DAY])
    wide = metrics.pivot("metric", index=["data_type", "prompting_mode"], values="value")
    counts = metrics.filter(pl.col("metric").is_in(["retrieval_top1", "persona_lift"])).pivot(
        "metric", index=["data_type", "prompting_mode"], values="rows"
    )
    wide = wide.join(
        counts.rename({"retrieval_top1": "rows", "persona_lift": "rows asked again"}),
        on=["data_type", "prompting_mode"],
    )
    base = metrics.filter(pl.col("metric") == "retrieval_top1")["baseline"].max()
    print(
        f"\nmodel {os.environ.get('PERSONAHUB_MODEL', 'the embedded SmolLM2-135M')}, "
        f"{elapsed:.0f} s (lake {work})"
    )
    print(
        f"\nPersona fidelity (retrieval chance {base:.2f}; persona_lift and distant_gap: 0 if the "
        "persona changed nothing)\n"
    )
    cols = list(wide.columns)
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for row in wide.iter_rows():
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    if "judge_adherence" in set(metrics["metric"]):
        judged = metrics.filter(pl.col("metric") == "judge_adherence")
        for r in judged.iter_rows(named=True):
            print(
                f"judge {r['data_type']}/{r['prompting_mode']}: {r['value']:.2f} "
                f"(no persona: {r['baseline']:.2f})"
            )

    corrected = attributes.filter(pl.col("corrected").is_not_null())
    reasons: dict[str, int] = {}
    for c in corrected["corrected"]:
        for attribute in json.loads(c):
            reasons[attribute] = reasons.get(attribute, 0) + 1
    print(f"\nPersona attributes: {attributes.height} kept personas")
    print("| attribute | known | unknown | set to unknown by the checks |")
    print("| --- | ---: | ---: | ---: |")
    for a in ("domain", "occupation", "expertise_level", "age_band"):
        unknown = attributes.filter(pl.col(a) == "unknown").height
        print(f"| {a} | {attributes.height - unknown} | {unknown} | {reasons.get(a, 0)} |")
    print("\nstep seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
