"""Sampling to a target mix: raking reaches what the hub can give, says what it cannot and why, and
draws are seeded, reproducible and independent of row order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from personahub_dagster.core.stages.mix import OTHER, rake, sample


def hub(n: int = 20_000, seed: int = 0) -> pl.DataFrame:
    """A skewed hub: 70% software, locales correlated with domain, every ``ja`` persona in ``anime``."""
    rng = np.random.default_rng(seed)
    domain = rng.choice(["software", "medicine", "law", "anime"], n, p=[0.7, 0.15, 0.1, 0.05])
    locale = np.where(domain == "anime", "ja", rng.choice(["en", "fr", "de"], n, p=[0.8, 0.1, 0.1]))
    level = rng.choice(["novice", "expert", "unknown"], n, p=[0.5, 0.3, 0.2])
    return pl.DataFrame(
        {"persona_id": [f"p-{i:06d}" for i in range(n)], "domain": domain, "locale": locale, "level": level}
    )


def shares(frame: pl.DataFrame, column: str, weights: np.ndarray | None = None) -> dict[str, float]:
    w = np.ones(frame.height) if weights is None else weights
    totals = pl.DataFrame({"v": frame[column], "w": w}).group_by("v").agg(pl.col("w").sum())
    return {r["v"]: r["w"] / w.sum() for r in totals.iter_rows(named=True)}


def test_feasible_targets_are_met_on_every_attribute_at_once():
    frame = hub()
    targets = {"domain": {"software": 0.25, "medicine": 0.25, "law": 0.25}, "level": {"expert": 0.5}}
    r = rake(frame, targets)
    assert r.feasible and r.converged and r.max_error <= 0.005
    got = shares(frame, "domain", r.weights)
    assert abs(got["software"] - 0.25) < 0.006 and abs(got["anime"] - 0.25) < 0.006  # the rest: anime
    assert abs(shares(frame, "level", r.weights)["expert"] - 0.5) < 0.006
    assert abs(r.weights.mean() - 1) < 1e-9 and r.reached["domain"][OTHER] == pytest.approx(0.25, abs=0.006)
    assert shares(frame, "domain")["software"] > 0.65  # the hub itself is unchanged: 70% software


def test_a_value_the_hub_lacks_is_reported_absent_and_the_others_share_its_part():
    r = rake(hub(), {"domain": {"software": 0.3, "astronomy": 0.2}})
    assert [(s.value, s.reason, s.reached) for s in r.infeasible] == [("astronomy", "absent", 0.0)]
    assert r.reached["domain"]["software"] == pytest.approx(0.3 / 0.8, abs=0.006)  # pro rata


def test_targets_that_contradict_the_hub_are_reported_with_what_was_reached():
    # every ja persona is an anime persona: 20% ja and 1% anime cannot both hold
    r = rake(hub(), {"domain": {"anime": 0.01}, "locale": {"ja": 0.2}}, max_weight=1e6)
    assert not r.converged and not r.feasible
    assert {s.reason for s in r.infeasible} == {"conflicting targets"}
    assert {(s.attribute, s.value) for s in r.infeasible} & {("domain", "anime"), ("locale", "ja")}
    assert r.max_error > 0.05


def test_a_target_needing_extreme_weights_is_capped_and_says_so():
    frame = hub()  # anime is 5%: 60% of the draw would need each anime persona weighted ~28x the rest
    r = rake(frame, {"domain": {"anime": 0.6}}, max_weight=5.0)
    assert r.weights.max() <= 5.0 * (1 + 1e-6)
    assert [(s.value, s.reason) for s in r.infeasible][:1] == [("anime", "weight cap")]
    assert rake(frame, {"domain": {"anime": 0.6}}, max_weight=100.0).feasible


def test_a_value_asked_at_zero_is_left_out_of_the_draw():
    frame = hub()
    r = rake(frame, {"domain": {"software": 0.0, "medicine": 0.5, "law": 0.3, "anime": 0.2}})
    assert r.feasible
    drawn = sample(frame, 2_000, r.weights, seed=1)
    assert "software" not in drawn["domain"].to_list()


def test_draws_are_seeded_order_independent_and_follow_the_weights():
    frame = hub()
    r = rake(frame, {"domain": {"software": 0.25, "medicine": 0.25, "law": 0.25}})
    a = sample(frame, 1_000, r.weights, seed=7)
    shuffled = frame.with_columns(pl.Series("w", r.weights)).sample(fraction=1.0, shuffle=True, seed=3)
    b = sample(shuffled, 1_000, shuffled["w"].to_numpy(), seed=7)
    assert sorted(a["persona_id"]) == sorted(b["persona_id"])  # the same personas, whatever the order
    assert set(sample(frame, 1_000, r.weights, seed=8)["persona_id"]) != set(a["persona_id"])
    got = shares(a, "domain")  # 1,000 of 20,000: sampling noise ~0.014 a share
    assert all(abs(got[d] - 0.25) < 0.05 for d in ("software", "medicine", "law", "anime")), got
    assert a["persona_id"].n_unique() == 1_000  # without replacement


def test_no_targets_is_the_uniform_draw():
    frame = hub(5_000)
    r = rake(frame, {})
    assert r.feasible and (r.weights == 1).all()
    drawn = sample(frame, 1_000, seed=2)
    assert shares(drawn, "domain")["software"] == pytest.approx(0.7, abs=0.05)
    assert drawn.equals(sample(frame, 1_000, np.ones(frame.height), seed=2))


def test_bad_targets_are_refused_naming_them():
    with pytest.raises(ValueError, match="no column for"):
        rake(hub(100), {"occupation": {"nurse": 0.5}})
    with pytest.raises(ValueError, match="'domain'"):
        rake(hub(100), {"domain": {"software": 0.8, "law": 0.4}})
