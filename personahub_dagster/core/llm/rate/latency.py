"""Concurrency from latency, for servers that queue instead of answering 429 (vLLM, llama.cpp's
server): TCP Vegas' rule on request latency — the least round mean is the unqueued latency, and the
requests beyond what that latency explains are the ones waiting in the server's queue."""

from __future__ import annotations

_MIN_ROUND = 8  # answers a latency round takes at least


class LatencyLimit:
    """Concurrency from latency alone, for servers that queue rather than refuse (TCP Vegas).

    Each round of ``limit`` answers gives a mean latency; against the least round mean seen it says
    how many requests wait in the server's queue: ``limit × (1 − least / mean)``. Fewer than ``alpha``:
    the server has room — double the limit while nothing queues (slow start), then add one. More
    than ``beta``: back to the concurrency the server serves without queueing (``limit × least /
    mean``) plus ``alpha``. In between: hold. A server with K slots ends with about K +
    ``alpha``…``beta`` in flight: its full throughput, at near its unloaded latency (TCP Vegas keeps
    2–4 packets queued; requests vary more than packets, so 3–6 here, over rounds of ≥ 8 answers)."""

    def __init__(self, max_concurrency: int, start: int = 4, alpha: float = 3.0, beta: float = 6.0):
        self.max = max(1, max_concurrency)
        self.limit = float(min(self.max, start))
        self.alpha, self.beta = alpha, beta
        self.least: float | None = None
        self.slow_start = True
        self._round: list[float] = []

    def observe(self, latency_s: float) -> float:
        """One answer's latency; the limit after it."""
        self._round.append(latency_s)
        if len(self._round) < max(int(self.limit), _MIN_ROUND):  # a mean of a few answers is noise
            return self.limit
        mean = sum(self._round) / len(self._round)
        self._round = []
        # the least *round mean*: one lucky answer is not the server's unloaded latency
        self.least = mean if self.least is None else min(self.least, mean)
        queued = self.limit * (1 - self.least / mean) if mean > 0 else 0.0
        if queued > 1:  # something queues: doubling would overshoot
            self.slow_start = False
        if queued < self.alpha:
            grown = self.limit * 2 if self.slow_start else self.limit + 1
            self.limit = float(min(self.max, grown))
        elif queued > self.beta:  # back to what the server serves unqueued, plus alpha waiting
            self.limit = max(1.0, self.limit * self.least / mean + self.alpha)
        return self.limit
