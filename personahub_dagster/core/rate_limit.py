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
* **AIMD** — a 429 halves the rate and the number of requests allowed in flight (once per episode: the
  429s of requests sent before the cut do not cut again); after a window of successes both grow back
  by a step, up to the configured ceiling. Without configured budgets AIMD still adapts the
  concurrency, so a provider with unknown limits is found by probing.
* **Headers** — ``x-ratelimit-remaining-requests`` / ``-tokens`` with their ``-reset-`` times, when a
  provider sends them: once a remainder reaches zero, sending pauses until its reset (at most a
  minute) — before a 429 happens.
* **Several workers, one key** — each worker paces at ``share`` of the key's limits (``1/N`` for N
  workers, by config). A shared bucket needs a shared store: with the lake on object storage there is
  none fast enough, and the deployment's Postgres is where a shared budget belongs. Until then the
  split is static, and each worker's AIMD still reacts to 429s its peers cause.

Single-threaded by design: one pacer per gateway, used from one event loop at a time (the gateway runs
each stage in a fresh loop, so the pacer keeps no loop-bound primitives — it sleeps, then re-checks).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

_MIN_FACTOR = 1 / 64  # AIMD never cuts the rate below this share of the budget
_STEP = 0.1  # additive increase of the rate factor per window of successes (floor to full: ~10 windows)


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
    sent: int = 0
    first_sent: float | None = None
    last_sent: float | None = None

    def sent_per_minute(self) -> float | None:
        if self.sent < 2 or self.first_sent is None or self.last_sent in (None, self.first_sent):
            return None
        return 60.0 * (self.sent - 1) / (self.last_sent - self.first_sent)


class Pacer:
    """Paces one worker's attempts under ``rpm`` / ``tpm`` (None: no such budget) and at most
    ``max_concurrency`` in flight, adapting both with AIMD."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        max_concurrency: int,
        share: float = 1.0,
        window: int = 20,
        adaptive: bool = True,
    ):
        if not 0 < share <= 1:
            raise ValueError(f"rate share must be in (0, 1], got {share}")
        now = time.monotonic()
        self.rpm = rpm * share if rpm else None
        self.tpm = tpm * share if tpm else None
        # Buckets start half full: the provider's start full, so half a second of its allowance stays
        # spare and absorbs the jitter between our send times and its arrival times.
        self._requests = _Bucket(self.rpm / 60, max(1.0, self.rpm / 120), now) if self.rpm else None
        self._tokens = _Bucket(self.tpm / 60, self.tpm / 120, now) if self.tpm else None
        self.max_concurrency = max(1, max_concurrency)
        self.limit = float(self.max_concurrency)  # allowed in flight (AIMD)
        self.factor = 1.0  # share of the rate budgets allowed (AIMD)
        self.window = window
        self.adaptive = adaptive  # False: fixed budgets and concurrency, no AIMD, no header steering
        self.in_flight = 0
        self._successes = 0
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
            for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
                if bucket is not None:
                    bucket.refill(self.factor, now)
                    wait = max(wait, bucket.wait(amount, self.factor))
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
        return now

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def on_success(self, headers: Mapping[str, str] | None = None, token_error: int = 0) -> None:
        """An answer: give back (or take) the error of the prompt-token estimate, read the provider's
        rate-limit headers, and grow back after a window of successes."""
        self.release()
        if self._tokens is not None and token_error:
            self._tokens.level -= token_error
        if not self.adaptive:
            return
        self._steer(headers)
        self._successes += 1
        if self._successes >= max(self.window, int(self.limit)):
            self._successes = 0
            self.factor = min(1.0, self.factor + _STEP)
            self.limit = min(float(self.max_concurrency), self.limit + 1)

    def on_rate_limited(
        self, sent_at: float, retry_after: float | None, headers: Mapping[str, str] | None = None
    ) -> None:
        """A 429: pause everyone for ``Retry-After``; cut rate and concurrency once per episode."""
        self.release()
        now = time.monotonic()
        self.stats.rate_limited += 1
        if not self.adaptive:
            return
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        self._steer(headers)
        if sent_at >= self._last_cut:  # sent after the last cut: the cut was not enough
            self._last_cut = now
            self.stats.cuts += 1
            self.factor = max(_MIN_FACTOR, self.factor / 2)
            self.limit = max(1.0, self.limit / 2)
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
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = reset_seconds(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is not None and reset is not None and remaining < 1:
                self._paused_until = max(self._paused_until, time.monotonic() + min(reset, 60.0))
                self.stats.steered += 1


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")


def reset_seconds(value: str | None) -> float | None:
    """OpenAI's reset times (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain seconds, in seconds."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = list(_DURATION.finditer(value))
    if not parts or "".join(p.group(0) for p in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(p["n"]) * scale[p["unit"]] for p in parts)
