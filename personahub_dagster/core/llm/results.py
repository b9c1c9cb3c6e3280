"""What a stage asks the gateway (:class:`LLMRequest`) and what it gets back: one :class:`LLMResult`
per request, in request order, and :class:`GatewayStats` for the whole call — plain values, so a stage
and its tests need nothing of the gateway's machinery."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LLMRequest:
    """One chat request. ``key`` is the caller's id for the input, carried through to the result (and
    into ``rejects.input_id``); ``context`` is whatever the stage needs to turn the answer into a row
    (never sent, never part of the cache key)."""

    key: str
    messages: list[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)  # overrides of the config's sampling params
    context: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LLMResult:
    key: str
    request_hash: str
    content: str | None
    error: str | None = None
    cached: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    skipped: bool = False  # not sent: the run's budget was spent
    cost_usd: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.content is not None


@dataclass
class GatewayStats:
    """What one ``generate`` call did; the Dagster layer turns this into materialization metadata."""

    requests: int = 0  # asked for by the stage, duplicates included
    cache_hits: int = 0  # answered from the response cache: nothing sent, nothing paid
    calls: int = 0  # attempts sent to the model (one row each in llm_calls)
    failures: int = 0  # requests that ended without an answer
    retries: int = 0  # attempts after a transient failure
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # where the model has a price
    skipped: int = 0  # not sent: the run's budget would not allow it
    scrubbed: int = 0  # requests whose personal data was scrubbed before sending
    rate_limited: int = 0  # 429s (or a provider's rate-limit errors) met
    budget_exhausted: str | None = None
    allowed_rpm: float | None = None  # the request rate the pacer allowed at the end (after AIMD)
    sent_per_minute: float | None = None  # the request rate actually sent
    latencies_s: list[float] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)  # batch mode: the provider's batches
    batch_submitted: int = 0  # batch mode: requests submitted (0 when a resumed run only polled)

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.requests if self.requests else 0.0

    def latency_percentile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    def merge(self, other: GatewayStats) -> None:
        for name in (
            "requests",
            "cache_hits",
            "calls",
            "failures",
            "retries",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "skipped",
            "scrubbed",
            "rate_limited",
            "batch_submitted",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.batch_ids.extend(b for b in other.batch_ids if b not in self.batch_ids)
        self.budget_exhausted = self.budget_exhausted or other.budget_exhausted
        self.allowed_rpm = other.allowed_rpm if other.allowed_rpm is not None else self.allowed_rpm
        self.sent_per_minute = other.sent_per_minute or self.sent_per_minute
        self.latencies_s.extend(other.latencies_s)
