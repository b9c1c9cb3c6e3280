"""LLMGateway: every LLM call of the pipeline goes through here.

What it adds on top of litellm, and why:

* **Persistent cache** keyed by model + messages + sampling params (:mod:`llm_cache`). A re-run, or a
  run resumed after a crash, pays for nothing twice; identical requests inside a batch are sent once.
* **Bounded async fan-out**: ``concurrency`` requests in flight, so a provider is kept busy without
  being flooded.
* **Retries with exponential backoff and jitter** (tenacity) on transient failures only — rate limits,
  timeouts, connection drops, 5xx — never on a bad request or a bad key. litellm's own retries are
  switched off so that attempts are counted once, here.
* **A per-attempt timeout**, enforced both by litellm and by ``asyncio.wait_for`` (a hung provider
  cannot stall a stage).
* **Accounting**: one ``llm_calls`` row per attempt — tokens, latency, cost where litellm knows the
  price, status and error text — committed as it happens.
* **Secrets**: the API key is passed to litellm per call, never enters a cache key, a log line or an
  error message (errors are redacted before they are stored).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from personahub_dagster.core.llm_cache import (
    CachedResponse,
    CallRecord,
    ResponseCache,
    request_fingerprint,
)
from personahub_dagster.core.local_models import (
    DEFAULT_MODEL,
    LOCAL_PROVIDER,
    count_local_tokens,
    ensure_registered,
)

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class LLMConfig:
    """How to reach a model. ``model`` is any litellm model string; the default needs no network."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = 0


@dataclass(frozen=True)
class LLMRequest:
    """One chat request. ``key`` is the caller's id for the input, carried through to the result."""

    key: str
    messages: list[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)  # overrides of the config's sampling params


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

    @property
    def ok(self) -> bool:
        return self.error is None and self.content is not None


@dataclass
class GatewayStats:
    """What one ``generate`` call did; the Dagster layer turns this into materialization metadata."""

    requests: int = 0
    cache_hits: int = 0
    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

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
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies_s.extend(other.latencies_s)


class _AttemptFailed(Exception):
    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _AttemptFailed) and exc.transient


def classify(exc: BaseException) -> bool:
    """True when a failure is worth retrying (rate limit, timeout, connection, server error)."""
    import litellm

    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return True
    transient_types = (
        litellm.exceptions.RateLimitError,
        litellm.exceptions.Timeout,
        litellm.exceptions.APIConnectionError,
        litellm.exceptions.InternalServerError,
        litellm.exceptions.ServiceUnavailableError,
    )
    if isinstance(exc, transient_types):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in TRANSIENT_STATUS


class LLMGateway:
    """Cached, bounded, retried, accounted access to one model."""

    def __init__(self, config: LLMConfig, cache: ResponseCache):
        self.config = config
        self.cache = cache
        if config.model.startswith(f"{LOCAL_PROVIDER}/"):
            ensure_registered()

    @property
    def concurrency(self) -> int:
        """Requests in flight. A local llama.cpp model runs one request at a time per process, so more
        would only queue behind its lock and turn measured latency into waiting time."""
        return 1 if self.config.model.startswith(f"{LOCAL_PROVIDER}/") else max(1, self.config.concurrency)

    # -- public API ----------------------------------------------------------------------------
    def request_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sampling params that go into the cache key (and to the provider)."""
        params: dict[str, Any] = {
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "seed": self.config.seed,
        }
        params.update(overrides or {})
        return {k: v for k, v in params.items() if v is not None}

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this model: llama.cpp's tokenizer for local models, litellm's
        (bundled, offline) tokenizers otherwise, ~4 characters a token when neither knows the model."""
        if self.config.model.startswith(f"{LOCAL_PROVIDER}/"):
            return count_local_tokens(self.config.model.split("/", 1)[1], text)
        import litellm

        try:
            return int(litellm.token_counter(model=self.config.model, text=text))
        except Exception:
            return max(1, len(text) // 4)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """``text`` cut at a word boundary to at most ``max_tokens`` tokens, and whether it was cut."""
        n = self.count_tokens(text)
        if n <= max_tokens:
            return text, False
        cut = text
        while n > max_tokens:
            keep = max(1, int(len(cut) * max_tokens / n * 0.97))
            head = cut[:keep]
            cut = head.rsplit(" ", 1)[0] if " " in head else head
            n = self.count_tokens(cut)
        return cut, True

    def fingerprint(self, request: LLMRequest) -> str:
        return request_fingerprint(self.config.model, request.messages, self.request_params(request.params))

    def generate(
        self,
        requests: Sequence[LLMRequest],
        stage: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[LLMResult], GatewayStats]:
        """Synchronous entry point (Dagster assets are sync); runs :meth:`agenerate` in a fresh loop."""
        return asyncio.run(self.agenerate(requests, stage, progress))

    async def agenerate(
        self,
        requests: Sequence[LLMRequest],
        stage: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[LLMResult], GatewayStats]:
        """Answer every request, from the cache when possible; results come back in request order."""
        stats = GatewayStats(requests=len(requests))
        hashes = [self.fingerprint(r) for r in requests]
        cached = self.cache.get_many(list(dict.fromkeys(hashes)))
        stats.cache_hits = sum(1 for h in hashes if h in cached)

        # One provider call per distinct uncached request, however often it repeats in the batch.
        todo: dict[str, LLMRequest] = {}
        for h, r in zip(hashes, requests, strict=True):
            if h not in cached:
                todo.setdefault(h, r)
        fresh: dict[str, LLMResult] = {}
        semaphore = asyncio.Semaphore(self.concurrency)
        done = 0

        async def one(h: str, r: LLMRequest) -> None:
            nonlocal done
            async with semaphore:
                fresh[h] = await self._call_with_retries(h, r, stage, stats)
            done += 1
            if progress:
                progress(done, len(todo))

        await asyncio.gather(*(one(h, r) for h, r in todo.items()))

        results = []
        for h, r in zip(hashes, requests, strict=True):
            if h in cached:
                c = cached[h]
                results.append(
                    LLMResult(
                        r.key, h, c.content, None, True, c.prompt_tokens, c.completion_tokens, c.finish_reason
                    )
                )
            else:
                f = fresh[h]
                results.append(
                    LLMResult(
                        r.key,
                        h,
                        f.content,
                        f.error,
                        f.cached,
                        f.prompt_tokens,
                        f.completion_tokens,
                        f.finish_reason,
                    )
                )
        return results, stats

    # -- internals -----------------------------------------------------------------------------
    async def _call_with_retries(self, h: str, r: LLMRequest, stage: str, stats: GatewayStats) -> LLMResult:
        cfg = self.config
        attempt = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(cfg.max_retries + 1),
            wait=wait_exponential_jitter(initial=cfg.backoff_initial_s, max=cfg.backoff_max_s),
            retry=retry_if_exception(_is_transient),
            reraise=False,
        )
        try:
            async for try_ in retrying:
                with try_:
                    attempt += 1
                    if attempt > 1:
                        stats.retries += 1
                    return await self._attempt(h, r, stage, attempt, stats)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            stats.failures += 1
            return LLMResult(r.key, h, None, f"gave up after {attempt} attempts: {last}")
        except _AttemptFailed as exc:
            stats.failures += 1
            return LLMResult(r.key, h, None, str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, h: str, r: LLMRequest, stage: str, attempt: int, stats: GatewayStats
    ) -> LLMResult:
        import litellm

        cfg = self.config
        params = self.request_params(r.params)
        kwargs: dict[str, Any] = dict(
            model=cfg.model,
            messages=r.messages,
            timeout=cfg.timeout_s,
            num_retries=0,
            max_retries=0,
            **params,
        )
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        if cfg.api_key:
            kwargs["api_key"] = cfg.api_key
        started = time.perf_counter()
        stats.calls += 1
        try:
            resp = await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=cfg.timeout_s + 5)
        except Exception as exc:
            latency = time.perf_counter() - started
            transient = classify(exc)
            message = self._redact(f"{type(exc).__name__}: {exc}")[:2000]
            status = (
                "timeout" if isinstance(exc, asyncio.TimeoutError | litellm.exceptions.Timeout) else "error"
            )
            self.cache.record_call(
                CallRecord(h, stage, cfg.model, attempt, None, None, None, latency, status, message)
            )
            raise _AttemptFailed(message, transient) from None
        latency = time.perf_counter() - started
        stats.latencies_s.append(latency)
        choice = resp.choices[0]
        content = choice.message.content or ""
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", None)
        ct = getattr(usage, "completion_tokens", None)
        cost = self._cost(resp)
        stats.prompt_tokens += pt or 0
        stats.completion_tokens += ct or 0
        stats.cost_usd += cost or 0.0
        cached = CachedResponse(content, choice.finish_reason, pt, ct)
        self.cache.put(
            h, cfg.model, cached, CallRecord(h, stage, cfg.model, attempt, pt, ct, cost, latency, "ok", None)
        )
        return LLMResult(r.key, h, content, None, False, pt, ct, choice.finish_reason)

    def _cost(self, resp: Any) -> float | None:
        if self.config.model.startswith(f"{LOCAL_PROVIDER}/"):
            return 0.0
        import litellm

        try:
            return float(litellm.completion_cost(completion_response=resp))
        except Exception:  # unknown price: record None, not a guess
            return None

    def _redact(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text
