"""What the hub is made of: the shares of its kept personas over their attributes, per day and over
all days, and how far they drift from a target mix.

A day's composition is counted from that day's ``persona_attributes`` rows alone (O(day)) and stored
as a few rows per attribute value in ``hub_composition``. The hub's composition is the sum of those
counts over the days: it reads the summary table (tens of rows a day — a decade of nights is under a
million small rows, summed by DuckDB in milliseconds), never a persona. Free-text occupations are not
counted (one value a persona: the count would be the hub itself); the topic clusters stand for them.
Cluster shares are counted under the clustering they were assigned by, and the hub's are summed over
the days of the live clustering only (a day assigned under an older one is re-assigned by running its
``persona_attributes`` again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

COUNTED = ("domain", "expertise_level", "age_band", "locale", "language", "cluster")


def cluster_value(cluster_id: int | None, label: str | None) -> str | None:
    """How a cluster reads in the composition: ``"3: pediatric nurses"``."""
    if cluster_id is None or cluster_id < 0:
        return None
    return f"{cluster_id}: {label}" if label else str(cluster_id)


def day_composition(attributes: pl.DataFrame) -> pl.DataFrame:
    """Counts and shares of each attribute's values among one day's personas (``attribute``,
    ``value``, ``personas``, ``share``, ``clustering``); a null value counts as ``unknown``."""
    if attributes.is_empty():
        return pl.DataFrame(
            schema={
                "attribute": pl.Utf8,
                "value": pl.Utf8,
                "personas": pl.Int64,
                "share": pl.Float64,
                "clustering": pl.Utf8,
            }
        )
    frame = attributes.with_columns(
        cluster=pl.struct("cluster_id", "cluster_label").map_elements(
            lambda r: cluster_value(r["cluster_id"], r["cluster_label"]), return_dtype=pl.Utf8
        )
    )
    parts = []
    for attribute in COUNTED:
        counts = (
            frame.group_by(pl.col(attribute).fill_null("unknown").alias("value"))
            .agg(pl.len().cast(pl.Int64).alias("personas"))
            .with_columns(attribute=pl.lit(attribute))
        )
        clustering = frame["clustering"].drop_nulls().first() if attribute == "cluster" else None
        parts.append(counts.with_columns(clustering=pl.lit(clustering, pl.Utf8)))
    out = pl.concat(parts).with_columns(share=pl.col("personas") / pl.col("personas").sum().over("attribute"))
    return out.select("attribute", "value", "personas", "share", "clustering").sort("attribute", "value")


def hub_composition(days: pl.DataFrame, clustering: str | None) -> pl.DataFrame:
    """The hub's shares from the days' counts: summed over every day, cluster counts over the days of
    ``clustering`` (the live one) only."""
    keep = days.filter((pl.col("attribute") != "cluster") | (pl.col("clustering") == clustering))
    summed = keep.group_by("attribute", "value").agg(pl.col("personas").sum())
    return summed.with_columns(share=pl.col("personas") / pl.col("personas").sum().over("attribute")).sort(
        "attribute", "personas", descending=[False, True]
    )


@dataclass(frozen=True)
class Drift:
    attribute: str
    value: str
    target: float
    share: float

    @property
    def drift(self) -> float:
        return self.share - self.target


def drifts(composition: pl.DataFrame, target: Mapping[str, Mapping[str, float]]) -> list[Drift]:
    """The share of every targeted value beside its target (a value the hub lacks has share 0);
    attributes not in ``target`` are not compared."""
    shares = {(a, v): s for a, v, s in composition.select("attribute", "value", "share").iter_rows()}
    return [
        Drift(attribute, value, float(t), float(shares.get((attribute, value), 0.0)))
        for attribute, values in target.items()
        for value, t in values.items()
    ]
