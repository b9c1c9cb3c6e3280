"""Sampling personas to a target mix: raking (iterative proportional fitting) of the hub's rows to
target shares over one or more attributes, a report of the targets the hub cannot meet, and seeded
weighted draws.

A hub grown from one night's texts can be 80% software people; a user who wants a dataset balanced
across domains, locales or expertise levels should get it at sampling time, without re-growing the
hub. Raking finds one weight per persona such that the weighted shares of every named attribute value
match their targets, staying as close to uniform as the targets allow (it is the maximum-entropy
solution, the survey statistician's standard tool). Three things make a target unreachable, and each is
reported rather than silently approximated:

* a value the hub does not hold at all (share 0, whatever the weights);
* targets that contradict each other through the hub's joint distribution (every ``ja`` persona is an
  ``anime`` persona, yet ``ja`` is asked for 20% and ``anime`` for 1%): raking then does not converge,
  and the shares it reaches are reported beside the targets;
* a target that needs some personas weighted past ``max_weight`` times the average (a handful of
  personas repeated a thousand times is not a mix): weights are capped, and what the cap costs is
  reported the same way.

Targets name values of an attribute column; the values they do not name (``unknown`` and missing
included) share what is left of that attribute, in their current proportions. Draws are without
replacement by Efraimidis–Spirakis keys ``-ln(1 - u) / w``, where ``u`` comes from a hash of the seed
and the persona id: the same seed and weights give the same personas whatever the rows' order, and with
equal weights the draw is the uniform one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from personahub_dagster.core.config.ids import digest

OTHER = "(other)"  # the values a target does not name, together


@dataclass(frozen=True)
class Shortfall:
    """One target the hub cannot meet: what was asked, what the weights reach, and why."""

    attribute: str
    value: str
    target: float
    reached: float
    reason: str  # absent | conflicting targets | weight cap


@dataclass
class Raking:
    """Weights (mean 1) and what they reach: the weighted share of every targeted value, the largest
    miss, and the targets that cannot be met (empty when every target is met within ``tolerance``)."""

    weights: np.ndarray
    reached: dict[str, dict[str, float]]
    max_error: float
    iterations: int
    converged: bool
    infeasible: list[Shortfall] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.infeasible


def _codes(column: pl.Series, named: Sequence[str]) -> np.ndarray:
    """Each row's index into ``named``, or ``len(named)`` for a value the target does not name."""
    codes = column.cast(pl.Utf8).replace_strict(
        list(named), list(range(len(named))), default=len(named), return_dtype=pl.Int64
    )
    return codes.fill_null(len(named)).to_numpy()


def _targets(attribute: str, shares: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    named = list(shares)
    asked = np.array([float(shares[v]) for v in named])
    if (asked < 0).any() or asked.sum() > 1 + 1e-9:
        raise ValueError(f"target for {attribute!r}: shares must be ≥ 0 and add up to at most 1")
    return named, np.append(asked, max(0.0, 1.0 - asked.sum()))  # the last slot: every other value


def rake(
    frame: pl.DataFrame,
    targets: Mapping[str, Mapping[str, float]],
    *,
    tolerance: float = 0.005,
    max_iterations: int = 200,
    max_weight: float = 50.0,
) -> Raking:
    """Weights for ``frame``'s rows so that, for each attribute column in ``targets``, the weighted
    share of each named value is its target (``{"locale": {"en": 0.5, "fr": 0.25}, …}``; the values
    not named share the rest). No targets: every weight is 1."""
    n = frame.height
    weights = np.ones(n)
    if not targets or n == 0:
        return Raking(weights, {}, 0.0, 0, True)
    missing = [a for a in targets if a not in frame.columns]
    if missing:
        raise ValueError(f"target names attributes the hub has no column for: {missing}")
    plan = []
    for attribute, shares in targets.items():
        named, asked = _targets(attribute, shares)
        codes = _codes(frame[attribute], named)
        present = np.bincount(codes, minlength=len(asked)) > 0
        goal = np.where(present, asked, 0.0)  # an absent value's share goes to the others, pro rata
        goal = goal / goal.sum() if goal.sum() > 0 else goal
        plan.append((attribute, named, asked, goal, codes, present))
    converged, iterations = False, 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - read after the loop
        for *_, goal, codes, _present in plan:
            current = np.bincount(codes, weights, minlength=len(goal)) / weights.sum()
            factor = np.divide(goal, current, out=np.ones_like(goal), where=current > 0)
            weights *= factor[codes]
            weights /= weights.mean()  # a value asked at 0 keeps weight 0; the rest stay within the cap
            weights = np.where(weights > 0, np.clip(weights, 1 / max_weight, max_weight), 0.0)
        if max(_miss(weights, codes, goal).max() for *_, goal, codes, _ in plan) <= tolerance:
            converged = True
            break
    for _ in range(100):  # the cap is relative to the mean, which clipping moves: settle both
        weights /= weights.mean()
        if weights.max() <= max_weight * (1 + 1e-9):
            break
        weights = np.minimum(weights, max_weight)
    live = weights[weights > 0]
    capped = bool((live >= max_weight * (1 - 1e-6)).any() or (live <= (1 + 1e-6) / max_weight).any())
    reached, infeasible, worst = {}, [], 0.0
    for attribute, named, asked, goal, codes, present in plan:
        shares = np.bincount(codes, weights, minlength=len(goal)) / weights.sum()
        reached[attribute] = {v: float(shares[i]) for i, v in enumerate(named)} | {OTHER: float(shares[-1])}
        for i, value in enumerate([*named, OTHER]):
            if not present[i]:
                if asked[i] > 0:
                    infeasible.append(Shortfall(attribute, value, float(asked[i]), 0.0, "absent"))
                continue
            miss = abs(shares[i] - goal[i])
            worst = max(worst, miss)
            if miss > tolerance:
                reason = "weight cap" if capped else "conflicting targets"
                infeasible.append(Shortfall(attribute, value, float(goal[i]), float(shares[i]), reason))
    return Raking(weights, reached, worst, iterations, converged, infeasible)


def _miss(weights: np.ndarray, codes: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """How far each value's weighted share is from its goal."""
    return np.abs(np.bincount(codes, weights, minlength=len(goal)) / weights.sum() - goal)


def draw_keys(ids: Sequence[str], weights: np.ndarray, seed: int | str = 0) -> np.ndarray:
    """Efraimidis–Spirakis keys ``-ln(1 - u) / w``: the ``n`` smallest are a weighted draw of ``n``
    without replacement. ``u`` is read from a hash of (seed, id), so a row's key depends on nothing
    else; with equal weights the keys sort as the hashes do (the uniform draw). A weight of 0: never."""
    u = np.array([(int(digest("select", seed, i)[:13], 16) + 0.5) / 16**13 for i in ids])
    with np.errstate(divide="ignore"):
        return -np.log1p(-u) / np.asarray(weights, dtype=float)


def sample(
    frame: pl.DataFrame,
    n: int,
    weights: np.ndarray | None = None,
    seed: int | str = 0,
    id_col: str = "persona_id",
) -> pl.DataFrame:
    """``n`` rows of ``frame`` drawn without replacement with probability proportional to ``weights``
    (None: uniformly), reproducibly for a seed."""
    w = np.ones(frame.height) if weights is None else np.asarray(weights, dtype=float)
    keys = draw_keys(frame[id_col].to_list(), w, seed)
    order = np.argsort(keys, kind="stable")
    order = order[np.isfinite(keys[order])][:n]
    return frame[order.tolist()]
