"""Asset checks, computed by the assets themselves as they materialize (so they see exactly the
partition just written) with thresholds from the run config (``checks:`` in each asset's config).

* ``reject_rate`` — share of LLM answers rejected (warning above ``max_reject_rate``);
* ``not_empty`` — the partition produced rows;
* ``dedup_ratio`` — the hub's share of duplicates in a sane band (too high: a stuck generator; zero
  over many personas: dedup not running);
* ``lineage`` — every generated row walks back through its personas to a source text;
* ``export_schema`` — the exported datasets have the release columns and ours, with their types;
* ``composition_drift`` — the hub's shares stay near the target mix (warning past ``max_drift``);
* ``fidelity_floor`` — generated rows pick their own persona out of k well above chance.
"""

import dagster as dg
import polars as pl
from pydantic import Field


class CheckThresholds(dg.Config):
    max_reject_rate: float = Field(default=0.9, ge=0, le=1, description="Warn above this reject share.")
    min_rows: int = Field(default=1, ge=0, description="Fewer rows than this fails not_empty.")
    min_dedup_ratio: float = Field(default=0.0, ge=0, le=1)
    max_dedup_ratio: float = Field(default=0.5, ge=0, le=1)


DESCRIPTIONS = {
    "reject_rate": "Share of LLM answers rejected stays under max_reject_rate.",
    "not_empty": "The partition produced at least min_rows rows.",
    "dedup_ratio": "The hub's duplicate share is within [min_dedup_ratio, max_dedup_ratio].",
    "lineage": "Every generated row walks back through its personas to a source text.",
    "export_schema": "Exported datasets have the release columns and our ids, with their types.",
    "composition_drift": "The hub's share of every value in target_mix is within max_drift of its target.",
    "fidelity_floor": "Each type and mode retrieves its own persona out of k at min_retrieval_lift × chance.",
}


def specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=DESCRIPTIONS[name]) for name in names]


def reject_rate(rows: int, rejects: int, t: CheckThresholds) -> dg.AssetCheckResult:
    total = rows + rejects
    rate = rejects / total if total else 0.0
    return dg.AssetCheckResult(
        check_name="reject_rate",
        passed=rate <= t.max_reject_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_rate": round(rate, 4), "max_reject_rate": t.max_reject_rate, "answers": total},
    )


def not_empty(rows: int, t: CheckThresholds, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="not_empty",
        passed=rows >= t.min_rows,
        severity=severity,
        metadata={"rows": rows, "min_rows": t.min_rows},
    )


def dedup_ratio(ratio: float, personas: int, t: CheckThresholds) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="dedup_ratio",
        passed=t.min_dedup_ratio <= ratio <= t.max_dedup_ratio,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "dedup_ratio": round(ratio, 4),
            "band": f"[{t.min_dedup_ratio}, {t.max_dedup_ratio}]",
            "personas": personas,
        },
    )


def lineage(broken: list[str], rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="lineage",
        passed=not broken,
        metadata={"rows": rows, "broken": len(broken), "examples": dg.MetadataValue.json(broken[:10])},
    )


def export_schema(frames: dict[str, pl.DataFrame], expected: dict[str, pl.DataType]) -> dg.AssetCheckResult:
    problems = {
        name: [f"{c}: {df.schema.get(c)}, expected {t}" for c, t in expected.items() if df.schema.get(c) != t]
        for name, df in frames.items()
    }
    problems = {k: v for k, v in problems.items() if v}
    return dg.AssetCheckResult(
        check_name="export_schema",
        passed=not problems,
        metadata={"files": len(frames), "problems": dg.MetadataValue.json(problems)},
    )
