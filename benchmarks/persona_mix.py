"""Raking a hub to a target mix (personahub_dagster.core.stages.mix) at a million personas.

A synthetic hub of 1M personas with five correlated attributes (domain skewed 60% to software, locale
tied to domain, expertise, age band with a third unknown, role) is raked to a target over all five at
once; then a 10,000-persona draw is taken with the weights. The same-run baseline is the uniform draw
(what synthesis takes today). A planted impossible target — 20% `ja` while every `ja` persona is an
`anime` persona asked at 2% — must be reported, not approximated silently.

    python benchmarks/persona_mix.py [--personas 1000000] [--draw 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from personahub_dagster.core.stages.mix import rake, sample

DOMAINS = ["software", "medicine", "law", "education", "finance", "cooking", "sport", "anime"]
DOMAIN_P = [0.6, 0.1, 0.06, 0.08, 0.06, 0.05, 0.04, 0.01]
TARGET = {
    "domain": {d: 0.125 for d in DOMAINS[:7]},  # anime gets the remaining 12.5% …
    "locale": {"en": 0.35, "fr": 0.2, "de": 0.2, "es": 0.125},  # … and ja (all anime) the same
    "expertise": {"novice": 0.34, "intermediate": 0.33},
    "age_band": {"18-29": 0.25, "30-49": 0.25, "50+": 0.25},
    "role": {"student": 0.3, "practitioner": 0.4},
}
IMPOSSIBLE = {"domain": {"anime": 0.02}, "locale": {"ja": 0.2}}


def synthetic_hub(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    domain = rng.choice(DOMAINS, n, p=DOMAIN_P)
    locale = rng.choice(["en", "fr", "de", "es"], n, p=[0.85, 0.06, 0.06, 0.03])
    locale = np.where(domain == "anime", "ja", locale)
    expertise = np.where(
        domain == "software",
        rng.choice(["novice", "intermediate", "expert"], n, p=[0.2, 0.3, 0.5]),
        rng.choice(["novice", "intermediate", "expert"], n, p=[0.5, 0.3, 0.2]),
    )
    age = rng.choice(["18-29", "30-49", "50+", "unknown"], n, p=[0.3, 0.3, 0.07, 0.33])
    role = rng.choice(["student", "practitioner", "hobbyist", "unknown"], n, p=[0.15, 0.6, 0.15, 0.1])
    return pl.DataFrame(
        {
            "persona_id": [f"p-{i:09d}" for i in range(n)],
            "domain": domain,
            "locale": locale,
            "expertise": expertise,
            "age_band": age,
            "role": role,
        }
    )


def max_share_error(frame: pl.DataFrame, target: dict, weights: np.ndarray | None = None) -> float:
    w = np.ones(frame.height) if weights is None else weights
    worst = 0.0
    for attribute, shares in target.items():
        totals = pl.DataFrame({"v": frame[attribute], "w": w}).group_by("v").agg(pl.col("w").sum())
        got = {r["v"]: r["w"] / w.sum() for r in totals.iter_rows(named=True)}
        worst = max(worst, *(abs(got.get(v, 0.0) - s) for v, s in shares.items()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--personas", type=int, default=1_000_000)
    ap.add_argument("--draw", type=int, default=10_000)
    args = ap.parse_args()

    t = time.perf_counter()
    frame = synthetic_hub(args.personas)
    print(f"synthetic hub: {args.personas:,} personas in {time.perf_counter() - t:.1f} s\n")

    rows = []
    t = time.perf_counter()
    uniform = sample(frame, args.draw, seed=1)
    rows.append(("uniform draw (baseline)", "–", "–", 0.0, time.perf_counter() - t, uniform, None))
    t = time.perf_counter()
    raked = rake(frame, TARGET)
    rake_s = time.perf_counter() - t
    t = time.perf_counter()
    drawn = sample(frame, args.draw, raked.weights, seed=1)
    rows.append(
        (
            "raked to 5 attributes",
            raked.iterations,
            raked.max_error,
            rake_s,
            time.perf_counter() - t,
            drawn,
            raked,
        )
    )

    print(
        f"| draw of {args.draw:,} | rake iterations | hub share error after raking | rake s | draw s | "
        "draw's max share error vs target | max weight |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, its, err, rs, ds, got, r in rows:
        err_text = "–" if r is None else f"{err:.4f}"
        weight = "1" if r is None else f"{r.weights.max():.1f}"
        miss = max_share_error(got, TARGET)
        print(f"| {name} | {its} | {err_text} | {rs:.2f} | {ds:.2f} | {miss:.3f} | {weight} |")

    t = time.perf_counter()
    bad = rake(frame, IMPOSSIBLE)
    print(
        f"\nplanted impossible target {IMPOSSIBLE} ({time.perf_counter() - t:.2f} s, "
        f"{bad.iterations} iterations, converged: {bad.converged}):"
    )
    print("| attribute | value | target | reached | reason |")
    print("|---|---|---:|---:|---|")
    for s in bad.infeasible:
        print(f"| {s.attribute} | {s.value} | {s.target:.3f} | {s.reached:.3f} | {s.reason} |")
    print(f"\ndetected: {'yes' if bad.infeasible else 'NO'}")


if __name__ == "__main__":
    main()
