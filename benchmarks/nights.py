"""Consecutive nights of the whole pipeline: does night N cost what night 1 costs?

Each night registers a day of fresh generated texts (and a few re-crawled ones) and runs the whole
pipeline job for that day in a process of its own, against the local fake OpenAI server (the LLM's
cost is not what is measured: the provider answers at once). Per night and per step: seconds, what
the lake's queries read (files opened, rows scanned; DuckDB's profile of every query), and the
night's peak RSS. Night 1 is the baseline, measured in the same run. Then a projection from the
measured per-night slopes of each step to night 365 and to a hub of 100M personas.

    python benchmarks/nights.py [--nights 10] [--texts-per-night 100] [--personas-per-type 8]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.nights import fake_llm, night  # noqa: E402

# steps whose time is mostly the provider's: shown, but not in the "non-LLM" total
LLM_STEPS = {
    "text_personas",
    "expanded_personas",
    "math_checks",
    "diversity_bands",
    "persona_attributes",
    "persona_fidelity",
    "verifiable_instructions",
    "conversations",
    "preference_pairs",
}


def synthesis_steps() -> set[str]:
    from personahub_dagster.defs.stages.synthesis import registry

    return {dt.asset for dt in registry().values()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=10)
    ap.add_argument("--texts-per-night", type=int, default=100)
    ap.add_argument("--personas-per-type", type=int, default=8, help="personas each synthesis asset uses")
    args = ap.parse_args()
    llm = LLM_STEPS | synthesis_steps()
    work = Path(tempfile.mkdtemp(prefix="nights-"))
    start = datetime.date(2026, 1, 1)
    results = []
    with FakeOpenAI(fake_llm) as server:
        for n in range(args.nights):
            day = (start + datetime.timedelta(days=n)).isoformat()
            r = night(work, day, n, args.texts_per_night, server.base_url, args.personas_per_type)
            results.append(r)
            print(f"night {n + 1}: {r['wall_s']:.1f} s, hub {r['hub'].get('hub_personas')}", file=sys.stderr)

    steps = sorted(results[0]["seconds"])
    plain = [s for s in steps if s not in llm]
    head = [
        "night",
        "hub personas",
        "wall s",
        "non-LLM s",
        "LLM steps s",
        "files read",
        "rows read",
        "peak RSS MB",
    ]
    print(f"\n{args.nights} nights, {args.texts_per_night} texts a night (lake in {work})\n")
    print("| " + " | ".join(head) + " |")
    print("|" + " ---: |" * len(head))
    for i, r in enumerate(results, 1):
        non_llm = sum(r["seconds"].get(s, 0.0) for s in plain)
        llm_s = sum(r["seconds"].get(s, 0.0) for s in steps if s in llm)
        files = sum(v["files"] for k, v in r["reads"].items() if k not in llm)
        rows = sum(v["rows"] for k, v in r["reads"].items() if k not in llm)
        cells = [i, r["hub"].get("hub_personas", 0), f"{r['wall_s']:.1f}", f"{non_llm:.2f}", f"{llm_s:.1f}",
                 files, rows, f"{r['peak_rss_mb']:.0f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")

    first, last = results[0], results[-1]
    print(f"\nPer step: night 1 → night {args.nights} (seconds; files opened, rows scanned)\n")
    print("| step | night 1 s | last s | ratio | files 1 → last | rows 1 → last | slope s/night |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    x = np.arange(1, len(results) + 1)
    slopes, noise = {}, {}
    for s in steps:
        ys = np.array([r["seconds"].get(s, 0.0) for r in results])
        slopes[s], noise[s] = _slope(x, ys)
        a, b = first["seconds"].get(s, 0.0), last["seconds"].get(s, 0.0)
        fa, fb = first["reads"].get(s, {}).get("files", 0), last["reads"].get(s, {}).get("files", 0)
        ra, rb = first["reads"].get(s, {}).get("rows", 0), last["reads"].get(s, {}).get("rows", 0)
        tag = " (LLM)" if s in llm else ""
        print(f"| {s}{tag} | {a:.2f} | {b:.2f} | {b / a if a else float('nan'):.2f} | {fa} → {fb} | "
              f"{ra} → {rb} | {slopes[s]:+.3f} ± {noise[s]:.3f} |")  # fmt: skip

    per_night = (last["hub"].get("hub_personas", 0) - first["hub"].get("hub_personas", 0)) / max(
        1, args.nights - 1
    )
    # a slope within two standard errors of zero is noise, not growth: it is projected as flat; so is
    # a falling one (a step does not get cheaper for ever)
    real = {s: slopes[s] if slopes[s] > 2 * noise[s] else 0.0 for s in plain}
    base = sum(float(np.mean([r["seconds"].get(s, 0.0) for r in results])) for s in plain)
    growing = sorted(s for s in plain if real[s])
    print(
        f"\nProjection of the non-LLM steps from the measured slopes ({per_night:.0f} personas a night; "
        f"slopes beyond two standard errors: {', '.join(growing) or 'none'}):\n"
    )
    print("| night | hub personas at this rate | non-LLM s (projected) | at 18k personas a night: night |")
    print("| ---: | ---: | ---: | ---: |")
    mid = (args.nights + 1) / 2
    for n in (1, args.nights, 365, 3650):
        print(f"| {n:,} | {per_night * n:,.0f} | {base + sum(real.values()) * (n - mid):,.1f} | "
              f"{18_000 * n:,} personas |")  # fmt: skip
    hub_nights = 100e6 / 18_000
    print(
        f"| {hub_nights:,.0f} (a 100M hub at 18k a night) | 100,000,000 | "
        f"{base + sum(real.values()) * (hub_nights - mid):,.1f} | |"
    )


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and its standard error."""
    if len(x) < 3:
        return 0.0, float("inf")
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    se = float(np.sqrt((resid @ resid) / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean()))))
    return float(slope), se


if __name__ == "__main__":
    main()
