"""The hub's composition from its days' counts: shares per attribute, unknowns counted, clusters of the
live clustering only, and every target compared (a value the hub lacks at share 0)."""

from __future__ import annotations

import polars as pl
import pytest

from personahub_dagster.core.hub.composition import (
    StaleTotals,
    apply_day,
    day_composition,
    drifts,
    hub_composition,
    read_totals,
    rebuild_totals,
    totals_frame,
)
from personahub_dagster.core.storage.store import as_store


def attributes(domains: list[str | None], clustering: str, cluster_ids: list[int]) -> pl.DataFrame:
    n = len(domains)
    return pl.DataFrame(
        {
            "domain": domains,
            "expertise_level": ["expert"] * n,
            "age_band": ["unknown"] * n,
            "locale": ["fr"] * (n - 1) + ["en"],
            "language": ["en"] * n,
            "cluster_id": cluster_ids,
            "cluster_label": ["nurses" if c == 0 else "welders" for c in cluster_ids],
            "clustering": [clustering] * n,
        },
        schema_overrides={"cluster_id": pl.Int32},
    )


def test_shares_per_day_and_over_the_days():
    one = day_composition(attributes(["health", "health", None, "trades"], "c-old", [0, 0, 1, 1]))
    shares = {(a, v): s for a, v, s in one.select("attribute", "value", "share").iter_rows()}
    assert shares[("domain", "health")] == 0.5 and shares[("domain", "unknown")] == 0.25
    assert shares[("locale", "fr")] == 0.75 and shares[("cluster", "0: nurses")] == 0.5
    two = day_composition(attributes(["trades", "trades"], "c-new", [1, 1]))
    days = pl.concat([one, two])
    hub = hub_composition(days, "c-new")
    domain = dict(hub.filter(pl.col("attribute") == "domain").select("value", "personas").iter_rows())
    assert domain == {"trades": 3, "health": 2, "unknown": 1}
    # clusters of an older clustering do not mix with the live one's
    assert hub.filter(pl.col("attribute") == "cluster").rows() == [("cluster", "1: welders", 2, 1.0)]
    found = {
        (d.attribute, d.value): round(d.drift, 3)
        for d in drifts(hub, {"domain": {"health": 0.5, "law": 0.1}})
    }
    assert found == {("domain", "health"): round(2 / 6 - 0.5, 3), ("domain", "law"): -0.1}
    assert day_composition(attributes(["health"], "c", [0]).clear()).is_empty()


def test_running_totals_replace_a_days_counts_and_repair_after_a_lost_write(tmp_path):
    store = as_store(tmp_path / "composition")
    d1 = day_composition(attributes(["health", "trades"], "c", [0, 1])).with_columns(partition=pl.lit("d1"))
    d2 = day_composition(attributes(["health"], "c", [0])).with_columns(partition=pl.lit("d2"))
    apply_day(store, "d1", d1.clear(), d1)
    totals = apply_day(store, "d2", d2.clear(), d2)
    assert _domain(totals) == {"health": 2, "trades": 1}
    # d1 run again with other personas: its old counts out, the new ones in (not added twice)
    d1_again = day_composition(attributes(["law", "law", "law"], "c", [1, 1, 1])).with_columns(
        partition=pl.lit("d1")
    )
    totals = apply_day(store, "d1", d1, d1_again)
    assert _domain(totals) == {"health": 1, "law": 3}
    # a run that wrote d2's rows and died before the totals: they no longer hold the table's d2
    d2_lost = day_composition(attributes(["arts"], "c", [0])).with_columns(partition=pl.lit("d2"))
    with pytest.raises(StaleTotals):
        apply_day(store, "d2", d2_lost, d2_lost)
    totals = rebuild_totals(store, pl.concat([d1_again, d2_lost]))
    assert _domain(totals) == {"law": 3, "arts": 1}
    assert _domain(apply_day(store, "d2", d2_lost, d2)) == {"law": 3, "health": 1}
    assert _domain(totals_frame(read_totals(store)[0]["counts"])) == {"law": 3, "health": 1}


def _domain(totals: pl.DataFrame) -> dict[str, int]:
    return dict(totals.filter(pl.col("attribute") == "domain").select("value", "personas").iter_rows())
