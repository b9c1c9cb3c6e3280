"""LLMGateway: every LLM call of the pipeline goes through here.

What it adds on top of litellm, and why:

* **Persistent cache** keyed by model + messages + sampling params (:mod:`.cache`). A re-run, or a
  run resumed after a crash, pays for nothing twice; identical requests inside a batch are sent once.
* **Bounded async fan-out**: ``concurrency`` requests in flight, so a provider is kept busy without
  being flooded; within that, a :class:`~personahub_dagster.core.llm.rate.pacer.Pacer` keeps the requests-
  and tokens-per-minute budgets (``rpm``, ``tpm``: drawn by every worker on the key from one bucket in
  the cache's database, or a static ``rate_share`` of them) and adapts rate and concurrency on 429
  overruns (AIMD), on the provider's rate-limit headers and, for servers that queue, on latency.
* **Retries with exponential backoff and jitter** (one loop, tenacity's backoff formula) on transient
  failures only — rate limits, timeouts, connection drops, 5xx — never on a bad request or a bad key.
  A ``Retry-After`` from the provider is honoured (up to ``retry_after_max_s``), and attempts stop at
  ``max_retries``. litellm's own retries are switched off so that attempts are counted once, here.
* **A per-attempt timeout**, enforced both by the transport and by ``asyncio.timeout`` (a hung provider
  cannot stall a stage).
* **Accounting**: one ``llm_calls`` row per attempt — tokens, latency, cost where litellm knows the
  price, status and error text — committed with the answer, in one transaction per event-loop turn.
* **A budget per run** (``max_run_tokens``, ``max_run_cost_usd``), or per scope of runs (a night's
  shards), kept in the cache's database for every stage, process and machine (:mod:`.budget`):
  each request in flight holds its worst case, one that could pass the cap is not sent and comes back
  ``skipped`` with the reason, so the stage keeps what it has and says why it stopped.
* **Personal data scrubbing** (:mod:`.pii`) of user turns before they reach a remote provider; on by
  default for every model that is not local. Scrubbing is deterministic, so the cache key is the
  original request plus the scrubber's version, and only requests actually sent are scrubbed.
* **Secrets**: the API key (a ``SecretStr``) is passed to the transport per call and never enters a
  cache key; every credential the process holds, however it got it, is redacted from errors before
  they are stored and from the log records of the libraries it calls
  (:mod:`~personahub_dagster.core.config.secrets`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

from tenacity import wait_exponential_jitter

from personahub_dagster.core.config.secrets import install_log_filter, register
from personahub_dagster.core.llm.budget import BudgetHolds, RunBudget
from personahub_dagster.core.llm.cache.records import CachedResponse, CallRecord, request_fingerprint
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.calls import Attempts
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.pii import PII_VERSION
from personahub_dagster.core.llm.rate.pacer import Pacer
from personahub_dagster.core.llm.rate.shared import SharedRate
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.llm.transports import choose_transport
from personahub_dagster.core.storage.store import Store

_CHUNK = 64  # requests fingerprinted, looked up and launched at a time (see LLMGateway.agenerate)


def in_flight_limit(concurrency: int) -> int:
    """Calls a gateway keeps scheduled but unanswered: enough to keep ``concurrency`` busy through a
    chunk boundary, few enough that a stage's requests stream through in bounded memory."""
    return max(4 * concurrency, 2 * _CHUNK)


def _chunks(items: Iterable[LLMRequest], size: int) -> Iterator[list[LLMRequest]]:
    chunk: list[LLMRequest] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class LLMGateway(Attempts, BudgetHolds):
    """Cached, bounded, retried, accounted access to one model."""

    log: Callable[[str], None] = staticmethod(print)  # batch mode's progress lines (the asset's logger)
    batch_context: dict[str, str] | None = None  # batch mode: who to re-run when batches end (the record)

    def __init__(self, config: LLMConfig, cache: ResponseCache, batch_store: Store | None = None):
        self.config = config
        self.cache = cache
        self.batch_store = batch_store  # where batch mode records its batch ids (the lake)
        self.run_id = config.run_id or uuid.uuid4().hex  # journal rows always name their run
        import litellm

        litellm.suppress_debug_info = True  # its "Give Feedback" banner on every error is noise in run logs
        register(config.key)  # from here on redacted wherever text leaves the process
        install_log_filter()  # litellm and httpx log provider errors (with their bodies) themselves
        self._pending_responses: list[tuple[str, str, CachedResponse]] = []
        self._pending_calls: list[CallRecord] = []
        self._flush_scheduled = False
        self._run_budget: RunBudget | None = None
        self._pricer = None
        self.transport = choose_transport(
            config.model, config.api_base, config.key, config.concurrency, config.fast_path
        )
        # A local llama.cpp model runs one request at a time per process, so more in flight would only
        # queue behind its lock and turn measured latency into waiting time.
        self.concurrency = 1 if self.transport.local else max(1, config.concurrency)
        self._backoff = wait_exponential_jitter(initial=config.backoff_initial_s, max=config.backoff_max_s)
        self.pacer = Pacer(
            config.rpm,
            config.tpm,
            self.concurrency,
            config.rate_share,
            adaptive=config.adaptive,
            latency_adaptive=config.latency_adaptive,
            shared=self._shared_rate(),
        )

    def _shared_rate(self) -> SharedRate | None:
        """The key's bucket in the cache's database, shared by every worker on the same model and
        endpoint — when limits are set and no static share was asked for."""
        cfg = self.config
        wanted = cfg.shared_rate if cfg.shared_rate is not None else cfg.rate_share == 1.0
        if not wanted or not (cfg.rpm or cfg.tpm) or self.transport.local:
            return None
        return SharedRate(self.cache, f"{cfg.model}@{cfg.api_base or 'provider'}", cfg.rpm, cfg.tpm)

    @property
    def is_local(self) -> bool:
        return self.transport.local

    @property
    def scrubs_pii(self) -> bool:
        """Personal data is scrubbed before it leaves the machine: by default for every remote model."""
        return self.config.scrub_pii if self.config.scrub_pii is not None else not self.is_local

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
        """Tokens of ``text`` for this model, by the transport's tokenizer."""
        return self.transport.count_tokens(text)

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
        params = self.request_params(request.params)
        if self.scrubs_pii:  # what is sent differs from what was asked: the key says so
            params = {**params, "_scrubbed": PII_VERSION}
        return request_fingerprint(self.config.model, request.messages, params)

    def generate(
        self,
        requests: Iterable[LLMRequest],
        stage: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[LLMResult], GatewayStats]:
        """Synchronous entry point (Dagster assets are sync); runs :meth:`agenerate` in a fresh loop,
        or, in ``batch`` mode, :meth:`generate_batch`."""
        if self.config.mode == "batch":
            return self.generate_batch(list(requests), stage)
        return asyncio.run(self.agenerate(requests, stage, progress))

    def generate_batch(self, requests: list[LLMRequest], stage: str) -> tuple[list[LLMResult], GatewayStats]:
        """Answer every request from the cache or the provider's batch API (:mod:`.batch.mode`); results in
        request order, as :meth:`agenerate` gives them."""
        from personahub_dagster.core.llm.batch.mode import generate_batch

        return generate_batch(self, requests, stage)

    async def agenerate(
        self,
        requests: Iterable[LLMRequest],
        stage: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[LLMResult], GatewayStats]:
        """Answer every request, from the cache when possible; results come back in request order.

        ``requests`` may be a generator: it is consumed in chunks, and each chunk's calls are on the
        wire while the stage renders the next one, so preparing 10k prompts does not hold back the
        first call. It is consumed no further ahead than :func:`in_flight_limit` calls not yet
        answered (a bounded queue): a day's prompts are never all in memory at once, only their
        answers. One provider call per distinct uncached request, however often it repeats.
        """
        stats = GatewayStats()
        order: list[tuple[str, str]] = []  # (request hash, caller's key), in request order
        cached: dict[str, CachedResponse] = {}
        fresh: dict[str, LLMResult] = {}
        scheduled: set[str] = set()  # hashes with a call (done or not)
        live: set[asyncio.Task] = set()  # calls not finished: what holds requests in memory
        errors: list[BaseException] = []
        limit = in_flight_limit(self.concurrency)
        semaphore = asyncio.Semaphore(self.concurrency)
        budget = self._run_budget = self._budget()  # shared with every worker of the run
        renewal = asyncio.create_task(self._renew(budget)) if budget is not None else None
        done = 0
        failing = False  # the stage is going down: a call woken now would be paid for and never read

        async def one(h: str, r: LLMRequest) -> None:
            nonlocal done, failing
            try:
                async with semaphore:
                    if failing:
                        return
                    reserve = self._reserve(r)
                    cost = self._reserve_cost(r, reserve) if budget is not None else 0.0
                    if budget is not None and not await budget.take(reserve, cost):
                        stats.skipped += 1
                        stats.budget_exhausted = budget.exhausted
                        fresh[h] = LLMResult(
                            r.key, h, None, f"budget_exhausted: {budget.exhausted}", skipped=True
                        )
                    else:
                        fresh[h] = await self._call_with_retries(h, r, stage, stats)
                        if budget is not None:  # the journal commit that follows gives its hold back
                            budget.settle(reserve, cost)
                done += 1
                if progress:
                    progress(done, len(scheduled))
            except BaseException:  # a progress callback's error, an interrupt, the cancellation below
                failing = True
                raise

        room = asyncio.Event()  # set when a call finishes and the queue has room again (O(1) a call)

        def finished(task: asyncio.Task) -> None:
            live.discard(task)
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())
            if len(live) < limit or errors:
                room.set()

        try:
            for chunk in _chunks(requests, _CHUNK):
                hashes = [self.fingerprint(r) for r in chunk]
                cached.update(self.cache.get_many([h for h in dict.fromkeys(hashes) if h not in cached]))
                for h, r in zip(hashes, chunk, strict=True):
                    order.append((h, r.key))
                    if h not in cached and h not in scheduled:
                        scheduled.add(h)
                        task = asyncio.create_task(one(h, r))
                        live.add(task)
                        task.add_done_callback(finished)
                await asyncio.sleep(0)  # the calls just scheduled go out before the next chunk is built
                while len(live) >= limit and not errors:  # backpressure on the stage's generator
                    room.clear()
                    await room.wait()
                if errors:
                    raise errors[0]
            await asyncio.gather(*live)
            if errors:
                raise errors[0]
        finally:
            for task in [*live, renewal]:
                if task is not None:
                    task.cancel()  # an error above must not leave calls running
            try:
                self._flush()
                if budget is not None:  # nothing is in flight any more: hold nothing
                    budget.tokens, budget.cost = 0, 0.0
                    self.cache.put_many([], [], budget.hold())
            finally:
                self._run_budget = None
                await self.transport.aclose()

        stats.requests = len(order)
        stats.allowed_rpm = self.pacer.allowed_rpm
        stats.sent_per_minute = self.pacer.stats.sent_per_minute()
        results = []
        for h, key in order:
            if h in cached:
                stats.cache_hits += 1
                c = cached[h]
                results.append(
                    LLMResult(
                        key, h, c.content, None, True, c.prompt_tokens, c.completion_tokens, c.finish_reason
                    )
                )
            else:
                results.append(replace(fresh[h], key=key))
        return results, stats
