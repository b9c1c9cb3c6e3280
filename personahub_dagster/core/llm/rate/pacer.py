"""Living within a provider's limits: requests and tokens per minute, adapted on 429s.

A provider caps a key at so many requests (RPM) and tokens (TPM) per minute, and enforces it at a
finer grain than the minute (OpenAI: "60,000 RPM may be enforced as 1,000 requests per second"). A
fixed concurrency either wastes the allowance or overruns it into 429 storms, which retries then
multiply. :class:`Pacer` sits in front of every attempt the gateway makes:

* **Budgets** — two token buckets refilled continuously at ``rpm/60`` requests and ``tpm/60`` tokens a
  second, each holding at most one second's worth (a burst the provider's own buckets also allow) and
  starting half full (the spare half absorbs network jitter against the provider's buckets). A
  request takes one request and its token estimate — prompt tokens from the model's tokenizer plus
  ``max_tokens``, which is how OpenAI counts a request against TPM — before it is sent; when the answer
  reports the prompt's real token count, the difference is given back or taken.
* **AIMD** — a 429 halves the rate and the number of requests allowed in flight, once per episode
  (the 429s of requests sent before the cut do not cut again), and only when 429s are more than
  ``cut_share`` of the last ``window`` answers: a limit overrun shows as a run of 429s (every request
  above the limit), a provider's sporadic 429s as one in many, and cutting on those would pin the
  limit near one request in flight. Both grow back like TCP: by one step per round of ``limit``
  answers, up to the configured ceiling. Without configured budgets AIMD still adapts the
  concurrency, so a provider with unknown limits is found by probing.
* **Latency** (``latency_adaptive``) — a self-hosted server (vLLM, llama.cpp) queues instead of
  answering 429, so overload shows only as latency. :class:`LatencyLimit` (TCP Vegas) estimates the
  requests waiting in the server's queue from each round's mean latency against the least seen,
  ``limit × (1 − least / mean)``, and keeps it between ``alpha`` and ``beta``: concurrency doubles
  while nothing queues, then moves by one. It finds the server's best concurrency without being told.
* **Headers** — ``x-ratelimit-remaining-requests`` / ``-tokens`` with their ``-reset-`` times, when a
  provider sends them: once a remainder reaches zero, sending pauses until its reset (at most a
  minute) — before a 429 happens.
* **Several workers, one key** — with a ``shared`` bucket (:mod:`.shared`, one row in the
  response cache's database: Postgres for a team, SQLite on one machine) every worker draws its
  requests and tokens from the same buckets in leases of a tenth of a second's allowance, and the
  AIMD factor lives in that row too: a 429 anywhere slows everyone, a worker that joins or leaves
  changes nobody's config, and an idle worker's allowance is simply there for the others. Without
  one, each worker paces at a static ``share`` of the key's limits (``1/N`` for N workers, by config).

Single-threaded by design: one pacer per gateway, used from one event loop at a time (the gateway runs
each stage in a fresh loop, so the pacer keeps no loop-bound primitives — it sleeps, then re-checks).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from personahub_dagster.core.llm.rate.headers import header_number, reset_seconds
from personahub_dagster.core.llm.rate.latency import LatencyLimit

_MIN_FACTOR = 1 / 64  # AIMD never cuts the rate below this share of the budget
_STEP = 0.1  # additive increase of the rate factor per round of answers (floor to full: ~10 rounds)
LEASE_S = 0.1  # a worker draws this many seconds of the shared allowance at a time
_IDLE_RESET_S = 60.0  # a shared bucket unused this long starts again at the full rate


@dataclass
class _Bucket:
    rate: float  # units per second at factor 1
    level: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self, factor: float, now: float) -> None:
        cap = max(self.rate * factor, 1.0)  # one second's worth, at least one unit
        self.level = min(cap, self.level + (now - self.stamp) * self.rate * factor)
        self.stamp = now

    def wait(self, amount: float, factor: float) -> float:
        """Seconds until ``amount`` can be taken (0 when it can now); an amount above one second's
        worth waits until the bucket is full, then overdraws."""
        need = min(amount, max(self.rate * factor, 1.0)) - self.level
        return 0.0 if need <= 0 else need / (self.rate * factor)


@dataclass
class PacerStats:
    rate_limited: int = 0  # 429s seen
    cuts: int = 0  # multiplicative decreases
    paused_s: float = 0.0  # time spent waiting for budget, a reset or a Retry-After
    steered: int = 0  # pauses the provider's rate-limit headers asked for
    draws: int = 0  # leases drawn from a shared bucket
    sent: int = 0
    first_sent: float | None = None
    last_sent: float | None = None

    def sent_per_minute(self) -> float | None:
        if self.sent < 2 or self.first_sent is None or self.last_sent in (None, self.first_sent):
            return None
        return 60.0 * (self.sent - 1) / (self.last_sent - self.first_sent)


@dataclass
class Grant:
    """What a draw on the shared bucket gave: requests and tokens, the shared AIMD factor, how long
    until what was asked would be there, and the database's clock (for :meth:`SharedBucket.cut`)."""

    requests: float
    tokens: float
    factor: float
    wait_s: float
    clock: float


class SharedBucket(Protocol):
    """A key's buckets and AIMD factor shared by every worker (:class:`~.shared.SharedRate`)."""

    def draw(self, requests: float, tokens: float, successes: int) -> Grant: ...

    def cut(self, sent_at_wall: float) -> float | None: ...


class Pacer:
    """Paces one worker's attempts under ``rpm`` / ``tpm`` (None: no such budget) and at most
    ``max_concurrency`` in flight, adapting both with AIMD (and concurrency with latency, when
    asked); with ``shared``, the budgets are the key's, drawn from by every worker."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        max_concurrency: int,
        share: float = 1.0,
        window: int = 32,
        adaptive: bool = True,
        cut_share: float = 0.15,
        latency_adaptive: bool = False,
        shared: SharedBucket | None = None,
    ):
        if not 0 < share <= 1:
            raise ValueError(f"rate share must be in (0, 1], got {share}")
        now = time.monotonic()
        share = 1.0 if shared is not None else share  # a shared bucket is the key's whole allowance
        self.rpm = rpm * share if rpm else None
        self.tpm = tpm * share if tpm else None
        self.shared = shared if (self.rpm or self.tpm) else None
        # Buckets start half full: the provider's start full, so half a second of its allowance stays
        # spare and absorbs the jitter between our send times and its arrival times. A shared bucket's
        # local buckets start empty and are filled by draws.
        local = self.shared is None
        self._requests = (
            _Bucket(self.rpm / 60, max(1.0, self.rpm / 120) if local else 0.0, now) if self.rpm else None
        )
        self._tokens = _Bucket(self.tpm / 60, self.tpm / 120 if local else 0.0, now) if self.tpm else None
        self.max_concurrency = max(1, max_concurrency)
        self.latency = LatencyLimit(self.max_concurrency) if latency_adaptive and adaptive else None
        self.limit = self.latency.limit if self.latency else float(self.max_concurrency)  # in flight
        self.factor = 1.0  # share of the rate budgets allowed (AIMD)
        self.window = window
        self.cut_share = cut_share
        self.adaptive = adaptive  # False: fixed budgets and concurrency, no AIMD, no header steering
        self.in_flight = 0
        self._successes = 0
        self._unreported = 0  # successes not yet reported to the shared bucket
        self._recent: deque[bool] = deque(maxlen=window)  # the last answers: True for a 429
        self._last_cut = 0.0
        self._paused_until = 0.0
        self.stats = PacerStats()

    @property
    def allowed_rpm(self) -> float | None:
        """The request rate the pacer allows now (after AIMD), per minute."""
        return self.rpm * self.factor if self.rpm else None

    async def acquire(self, tokens: int) -> float:
        """Wait until a request of ``tokens`` may go out, take its budget; returns the send time (pass
        it back to :meth:`on_rate_limited`)."""
        while True:
            now = time.monotonic()
            wait = max(0.0, self._paused_until - now)
            if self.in_flight >= int(self.limit):
                wait = max(wait, 0.005)  # a slot frees when an answer lands
            if self.shared is None:
                for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(self.factor, now)
                        wait = max(wait, bucket.wait(amount, self.factor))
            elif wait <= 0:
                wait = self._draw(tokens)
            if wait <= 0:
                break
            self.stats.paused_s += wait
            await asyncio.sleep(wait)
        if self._requests is not None:
            self._requests.level -= 1
        if self._tokens is not None:
            self._tokens.level -= tokens
        self.in_flight += 1
        s = self.stats
        s.sent += 1
        s.first_sent = now if s.first_sent is None else s.first_sent
        s.last_sent = now
        return time.time() if self.shared is not None else now

    def _draw(self, tokens: int) -> float:
        """Top the local buckets up from the shared ones when a request does not fit; the seconds to
        wait (0: it fits now)."""
        short_r = self._requests is not None and self._requests.level < 1
        short_t = self._tokens is not None and self._tokens.level < tokens
        if not (short_r or short_t):
            return 0.0
        want_r = max(1.0, self.rpm / 60 * self.factor * LEASE_S) - self._requests.level if self.rpm else 0.0
        want_t = (
            max(float(tokens), self.tpm / 60 * self.factor * LEASE_S) - self._tokens.level
            if self.tpm
            else 0.0
        )
        grant = self.shared.draw(max(0.0, want_r), max(0.0, want_t), self._unreported)
        self.stats.draws += 1
        self._unreported = 0
        self.factor = grant.factor
        if self._requests is not None:
            self._requests.level += grant.requests
        if self._tokens is not None:
            self._tokens.level += grant.tokens
        fits = (self._requests is None or self._requests.level >= 1) and (
            self._tokens is None or self._tokens.level >= tokens
        )
        return 0.0 if fits else min(1.0, max(0.005, grant.wait_s))

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def on_success(
        self, headers: Mapping[str, str] | None = None, token_error: int = 0, latency_s: float | None = None
    ) -> None:
        """An answer: give back (or take) the error of the prompt-token estimate, read the provider's
        rate-limit headers, and grow back by one step per round of ``limit`` answers (TCP's additive
        increase); with latency adaptation, let the round's latency set the concurrency."""
        self.release()
        if self._tokens is not None and token_error:
            self._tokens.level -= token_error
        if not self.adaptive:
            return
        self._recent.append(False)
        self._steer(headers)
        self._unreported += 1
        if self.latency is not None and latency_s is not None:
            self.limit = min(self.latency.observe(latency_s), self.limit + 1)
        self._successes += 1
        if self._successes >= max(1, int(self.limit)):
            self._successes = 0
            if self.shared is None:
                self.factor = min(1.0, self.factor + _STEP)
            if self.latency is None:
                self.limit = min(float(self.max_concurrency), self.limit + 1)
            else:
                self.limit = self.latency.limit

    def on_rate_limited(
        self, sent_at: float, retry_after: float | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """A 429: pause everyone for ``Retry-After``; cut rate and concurrency once per episode, when
        429s are more than ``cut_share`` of the recent answers."""
        self.release()
        self.stats.rate_limited += 1
        if not self.adaptive:
            return
        self._recent.append(True)
        if retry_after:
            self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
        self._steer(headers)
        if sum(self._recent) < self.cut_share * len(self._recent):
            return  # a sporadic 429, not a limit overrun: retried, nothing cut
        if self.shared is not None:
            factor = self.shared.cut(sent_at)
            if factor is None:  # another worker cut this episode already
                return
            self.factor = factor
        elif sent_at < self._last_cut:  # sent before the last cut: the same episode
            return
        else:
            self.factor = max(_MIN_FACTOR, self.factor / 2)
        self._last_cut = sent_at if self.shared is not None else time.monotonic()
        self.stats.cuts += 1
        self.limit = max(1.0, self.limit / 2)
        if self.latency is not None:
            self.latency.limit, self.latency.slow_start = self.limit, False
        self._successes = 0
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.level = min(bucket.level, 0.0)  # no burst right after a cut

    def on_failure(self) -> None:
        """Any other failed attempt: its slot is free; rate and concurrency stay."""
        self.release()

    def _steer(self, headers: Mapping[str, str] | None) -> None:
        """The provider says its allowance is spent: send nothing until it resets (at most a minute),
        rather than learn it from a 429."""
        if not headers:
            return
        for kind in ("requests", "tokens"):
            remaining = header_number(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = reset_seconds(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is not None and reset is not None and remaining < 1:
                self._paused_until = max(self._paused_until, time.monotonic() + min(reset, 60.0))
                self.stats.steered += 1
