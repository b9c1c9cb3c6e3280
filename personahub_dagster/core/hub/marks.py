"""Marking duplicates: :class:`Marks` (what each persona repeats, why, how closely), the compiled
earliest-wins loop of the embedding stage."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass
class Marks:
    """Per-persona marks of one batch; ``ref`` is the batch index of the kept persona when it is in
    the batch itself (None when it is in the hub), so references never depend on ids being unique."""

    dup_of: list[str | None]
    reason: list[str | None]
    sim: list[float | None]
    ref: list[int | None]
    nearest: list[float | None]  # cosine to the nearest kept persona when the embedding stage saw it

    @classmethod
    def empty(cls, n: int) -> Marks:
        return cls([None] * n, [None] * n, [None] * n, [None] * n, [None] * n)

    def set(self, i: int, of: str, reason: str, sim: float, ref: int | None = None) -> None:
        self.dup_of[i], self.reason[i], self.sim[i], self.ref[i] = of, reason, round(float(sim), 4), ref


@numba.njit(cache=True, nogil=True)
def earliest_wins_by_cosine(within, hub_sim, has_hub, threshold):
    """The embedding stage's greedy loop, compiled: row ``b`` of the block is compared with the hub's
    nearest (``hub_sim``) and with every earlier *kept* row; the best of them (a kept row only when
    strictly better than the hub; among rows, the earliest of equals) is its nearest, and it is kept
    when that is below ``threshold``. Returns (nearest similarity, the kept row it was nearest to or -1)."""
    m = within.shape[0]
    kept = np.empty(m, np.int64)
    n_kept = 0
    best = np.empty(m, np.float64)
    ref = np.full(m, -1, np.int64)
    for b in range(m):
        value = hub_sim[b] if has_hub[b] else -np.inf
        for k in range(n_kept):
            if within[b, kept[k]] > value:
                value, ref[b] = within[b, kept[k]], kept[k]
        best[b] = value
        if not (value >= threshold):
            kept[n_kept] = b
            n_kept += 1
    return best, ref
