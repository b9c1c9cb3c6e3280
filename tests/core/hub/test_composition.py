"""The hub's composition from its days' counts: shares per attribute, unknowns counted, clusters of the
live clustering only, and every target compared (a value the hub lacks at share 0)."""

from __future__ import annotations

import polars as pl

from personahub_dagster.core.hub.composition import day_composition, drifts, hub_composition


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
