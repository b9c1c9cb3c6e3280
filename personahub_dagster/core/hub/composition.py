"""What the hub is made of: the shares of its kept personas over their attributes, per day and over
all days, and how far they drift from a target mix.

A day's composition is counted from that day's ``persona_attributes`` rows alone (O(day)) and stored
as a few rows per attribute value in ``hub_composition``. The hub's composition is a running total
kept beside them (``totals.json``: a count per attribute value, and a digest of each day's counts so
that a day run again replaces its own contribution instead of adding it twice): a night reads the
totals and its own day, never the other days. If the totals and the table disagree (a run that died
between the two writes), the totals are summed again from the table — said in the log and the
metadata, never silently. Free-text occupations are not counted (one value a persona: the count would
be the hub itself); the topic clusters stand for them. Cluster shares are counted under the
clustering they were assigned by, and the hub's are those of the live clustering only (a day assigned
under an older one is re-assigned by running its ``persona_attributes`` again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from personahub_dagster.core.storage.store import Store

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


TOTALS = "totals.json"
_KEY = ("attribute", "value", "clustering")


class StaleTotals(Exception):
    """The running totals do not hold this day's counts as the table has them: sum them again."""


def _digest(rows: pl.DataFrame) -> str:
    items = sorted((a, v, c or "", int(n)) for a, v, c, n in rows.select(*_KEY, "personas").iter_rows())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def totals_frame(counts: Mapping[str, int]) -> pl.DataFrame:
    keys = [k.split("\t") for k in counts]
    return pl.DataFrame(
        {
            "attribute": [k[0] for k in keys],
            "value": [k[1] for k in keys],
            "clustering": [k[2] or None for k in keys],
            "personas": list(counts.values()),
        },
        schema={"attribute": pl.Utf8, "value": pl.Utf8, "clustering": pl.Utf8, "personas": pl.Int64},
    )


def read_totals(store: Store) -> tuple[dict, str | None]:
    """The running totals (``counts``: key → personas; ``days``: day → digest) and their version."""
    data, token = store.read_versioned(TOTALS)
    return (json.loads(data) if data else {"counts": {}, "days": {}}), token


def apply_day(store: Store, day: str, before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Replace ``day``'s counts in the running totals — ``before`` (its rows as the totals hold them)
    out, ``after`` in — by compare-and-swap; the totals' rows (``attribute``, ``value``,
    ``clustering``, ``personas``). :class:`StaleTotals` when the totals do not hold ``before``;
    :class:`~personahub_dagster.core.storage.store.ConcurrentUpdate` when another run moved them."""
    totals, token = read_totals(store)
    held = totals["days"].get(day)
    if held != (_digest(before) if before.height else None):
        raise StaleTotals(f"the composition totals do not hold {day}'s counts as the table has them")
    counts: dict[str, int] = dict(totals["counts"])
    for rows, sign in ((before, -1), (after, 1)):
        for a, v, c, n in rows.select(*_KEY, "personas").iter_rows():
            key = f"{a}\t{v}\t{c or ''}"
            counts[key] = counts.get(key, 0) + sign * int(n)
    counts = {k: n for k, n in counts.items() if n}
    days = (
        {**totals["days"], day: _digest(after)}
        if after.height
        else {d: h for d, h in totals["days"].items() if d != day}
    )
    store.swap(TOTALS, json.dumps({"counts": counts, "days": days}).encode(), token)
    return totals_frame(counts)


def rebuild_totals(store: Store, table: pl.DataFrame) -> pl.DataFrame:
    """The running totals summed again from every day's rows of ``hub_composition`` (the repair when
    :class:`StaleTotals`): the one read of the whole table, made only then."""
    _, token = read_totals(store)
    counts = {
        f"{a}\t{v}\t{c or ''}": int(n)
        for a, v, c, n in table.group_by(*_KEY).agg(pl.col("personas").sum()).iter_rows()
    }
    days = {str(d): _digest(rows) for (d,), rows in table.group_by("partition")}
    store.swap(TOTALS, json.dumps({"counts": counts, "days": days}).encode(), token)
    return totals_frame(counts)


def hub_composition(days: pl.DataFrame, clustering: str | None) -> pl.DataFrame:
    """The hub's shares from counts (the running totals, or days' rows): summed, cluster counts of
    ``clustering`` (the live one) only."""
    keep = days.filter((pl.col("attribute") != "cluster") | pl.col("clustering").eq_missing(clustering))
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
