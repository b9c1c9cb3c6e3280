"""LLMGateway: every LLM call of the pipeline goes through here.

What it adds on top of litellm, and why:

* **Persistent cache** keyed by model + messages + sampling params (:mod:`llm_cache`). A re-run, or a
  run resumed after a crash, pays for nothing twice; identical requests inside a batch are sent once.
* **Bounded async fan-out**: ``concurrency`` requests in flight, so a provider is kept busy without
  being flooded; within that, a :class:`~personahub_dagster.core.rate_limit.Pacer` keeps the requests-
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
  shards), kept in the cache's database for every stage, process and machine (:mod:`.run_budget`):
  each request in flight holds its worst case, one that could pass the cap is not sent and comes back
  ``skipped`` with the reason, so the stage keeps what it has and says why it stopped.
* **Personal data scrubbing** (:mod:`pii`) of user turns before they reach a remote provider; on by
  default for every model that is not local. Scrubbing is deterministic, so the cache key is the
  original request plus the scrubber's version, and only requests actually sent are scrubbed.
* **Secrets**: the API key (a ``SecretStr``) is passed to the transport per call and never enters a
  cache key; every credential the process holds, however it got it, is redacted from errors before
  they are stored and from the log records of the libraries it calls (:mod:`.secrets`).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

from pydantic import SecretStr
from tenacity import wait_exponential_jitter

from personahub_dagster.core.config.secrets import install_log_filter, redact, register
from personahub_dagster.core.llm.budget import RunBudget
from personahub_dagster.core.llm.cache.sqlite import (
    CachedResponse,
    CallRecord,
    ResponseCache,
    request_fingerprint,
)
from personahub_dagster.core.llm.local_models import DEFAULT_MODEL
from personahub_dagster.core.llm.pii import PII_VERSION, scrub_messages
from personahub_dagster.core.llm.rate.pacer import Pacer
from personahub_dagster.core.llm.rate.shared import SharedRate
from personahub_dagster.core.llm.transports import choose_transport
from personahub_dagster.core.storage.store import Store

HOLD_RENEW_S = 10.0  # a live gateway renews its budget hold this often; a dead one's lapses in 3×
_CHUNK = 64  # requests fingerprinted, looked up and launched at a time (see LLMGateway.agenerate)
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_CONFIG_ERRORS = ("Missing credentials", "api_key client option must be set", "LLM Provider NOT provided")


@dataclass(frozen=True)
class LLMConfig:
    """How to reach a model. ``model`` is any litellm model string; the default needs no network."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)  # a str is wrapped on construction
    concurrency: int = 8  # requests in flight (the local model: always 1)
    timeout_s: float = 120.0  # per attempt
    max_retries: int = 4  # retries of a transient failure, after the first attempt
    backoff_initial_s: float = 1.0  # doubles with each retry, plus up to 1 s of jitter …
    backoff_max_s: float = 30.0  # … up to this
    retry_after_max_s: float = 60.0  # the most of a provider's Retry-After that is honoured
    max_run_tokens: int | None = None  # the run's budget, summed over every stage and worker
    max_run_cost_usd: float | None = None
    run_id: str | None = None  # whose journal rows (and budget); None: a fresh id per gateway
    budget_scope: str | None = None  # runs that share one budget (a night's shards); None: the run's own
    scrub_pii: bool | None = None  # None: on for remote models, off for the local one
    fast_path: bool | None = None  # None: direct HTTP for OpenAI-compatible endpoints with an api_base
    rpm: float | None = None  # the key's requests per minute (None: no request budget)
    tpm: float | None = None  # the key's tokens per minute, prompt + max_tokens (None: no token budget)
    rate_share: float = 1.0  # this worker's share of rpm/tpm: 1/N when N workers use one key
    adaptive: bool = True  # AIMD: halve rate and concurrency on a 429 overrun, grow back like TCP
    # servers that queue instead of answering 429 (vLLM, llama.cpp server): concurrency from latency
    latency_adaptive: bool = False
    # rpm/tpm drawn from one bucket in the response cache's database by every worker on the key;
    # None: whenever rpm/tpm are set and rate_share is 1 (a static share < 1 keeps the static split)
    shared_rate: bool | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = 0
    # online: one request at a time; batch: the provider's batch API (half price, answers within its
    # window; core/batch.py), for OpenAI-compatible endpoints
    mode: str = "online"
    batch_poll_s: float = 30.0
    batch_max_wait_s: float | None = None  # past it: BatchPending, the record is kept for the next run
    batch_max_requests: int = 50_000
    batch_on_error: str = "reject"  # a request the batch answered with an error: reject | online

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # held as a SecretStr: never in a repr, a log or metadata
            object.__setattr__(self, "api_key", SecretStr(self.api_key) if self.api_key else None)

    @property
    def key(self) -> str | None:
        """The key itself, for the transport that sends it (and for nothing else)."""
        return self.api_key.get_secret_value() if self.api_key is not None else None


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


class _AttemptFailed(Exception):
    def __init__(self, message: str, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def _error_headers(exc: BaseException):
    return (
        getattr(exc, "litellm_response_headers", None)
        or getattr(getattr(exc, "response", None), "headers", None)
        or getattr(exc, "headers", None)
    )


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After``: seconds or an HTTP date;
    ``retry-after-ms``), from the error's HTTP response; None when it did not say."""
    headers = _error_headers(exc)  # litellm keeps the provider's headers in litellm_response_headers
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def is_rate_limit(exc: BaseException) -> bool:
    """A 429, or a provider's rate-limit error as litellm files it."""
    import litellm

    return isinstance(exc, litellm.exceptions.RateLimitError) or getattr(exc, "status_code", None) == 429


def classify(exc: BaseException) -> bool:
    """True when a failure is worth retrying (rate limit, timeout, connection, server error)."""
    import litellm

    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return True
    if any(m in str(exc) for m in _CONFIG_ERRORS):
        return (
            False  # raised by the client before sending (litellm files them under 500): a retry cannot help
        )
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


def batch_endpoint(config: LLMConfig, transport: object) -> tuple[str, str]:
    """Where a batch goes, and the model name the provider knows: the direct transport's endpoint, or
    OpenAI's own (``openai/…`` without a base URL); other providers have no OpenAI batch API."""
    from personahub_dagster.core.llm.transports import OPENAI_API_BASE, OpenAIHTTPTransport

    if isinstance(transport, OpenAIHTTPTransport):
        return transport.url.removesuffix("/chat/completions"), transport.model_name
    import litellm

    try:
        name, provider, _, _ = litellm.get_llm_provider(model=config.model, api_base=config.api_base)
    except Exception:
        provider, name = None, config.model
    if provider == "openai":
        return (config.api_base or OPENAI_API_BASE).rstrip("/"), name
    raise ValueError(
        f"batch mode needs an OpenAI-compatible batch API; {config.model} has none here "
        "(set PERSONAHUB_API_BASE to a server with /v1/batches, or use mode online)"
    )


class LLMGateway:
    """Cached, bounded, retried, accounted access to one model."""

    log: Callable[[str], None] = staticmethod(print)  # batch mode's progress lines (the asset's logger)
    batch_context: dict[str, str] | None = None  # batch mode: who to re-run when batches end (the record)

    def __init__(self, config: LLMConfig, cache: ResponseCache, batch_store: Store | None = None):
        if config.mode not in ("online", "batch"):
            raise ValueError(f"mode {config.mode!r}: use online or batch")
        if config.batch_on_error not in ("reject", "online"):
            raise ValueError(f"batch_on_error {config.batch_on_error!r}: use reject or online")
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
        """Answer every request from the cache or the provider's batch API (:mod:`.batch`); results in
        request order, as :meth:`agenerate` gives them. Requests the batch answered with an error are
        errors, or are asked online (``batch_on_error``)."""
        from personahub_dagster.core.llm.batch.run import (
            BATCH_DISCOUNT,
            STATE_FOLDER,
            BatchAPI,
            BatchRun,
            BatchSettings,
            journal_rows,
        )
        from personahub_dagster.core.llm.transports import Pricer

        cfg, stats = self.config, GatewayStats()
        base, model_name = batch_endpoint(cfg, self.transport)
        pricer = Pricer(cfg.model)
        if self.batch_store is None:
            raise ValueError("batch mode needs a place to record its batches (the lake)")
        hashes = [self.fingerprint(r) for r in requests]
        cached = self.cache.get_many(list(dict.fromkeys(hashes)))
        bodies: dict[str, dict] = {}
        for h, r in zip(hashes, requests, strict=True):
            if h not in cached and h not in bodies:
                messages = scrub_messages(r.messages) if self.scrubs_pii else r.messages
                stats.scrubbed += messages != r.messages
                bodies[h] = {
                    "model": model_name,
                    "messages": messages,
                    **self.request_params(r.params),
                }

        def store(answers: dict[str, CachedResponse], costs: dict[str, float | None]) -> None:
            self.cache.put_many(*journal_rows(answers, costs, stage, cfg.model, self.run_id))

        def price(pt: int | None, ct: int | None) -> float | None:
            online = pricer(None, pt, ct)
            return None if online is None else online * BATCH_DISCOUNT

        with BatchAPI(base, cfg.key, cfg.timeout_s) as api:
            run = BatchRun(
                api,
                self.batch_store.child(STATE_FOLDER),
                stage,
                hashes,
                BatchSettings(cfg.batch_poll_s, cfg.batch_max_wait_s, cfg.batch_max_requests),
                store,
                price,
                log=self.log,
                context=self.batch_context,
            )
            outcome = run.run(bodies) if bodies else None
        answered = dict(cached)
        if outcome is not None:
            answered.update(outcome.answers)
            stats.batch_ids = outcome.batch_ids
            stats.batch_submitted = outcome.submitted
            stats.calls = outcome.submitted
            stats.cost_usd = outcome.cost_usd
            for a in outcome.answers.values():
                stats.prompt_tokens += a.prompt_tokens or 0
                stats.completion_tokens += a.completion_tokens or 0
        errors = outcome.errors if outcome is not None else {}
        online: dict[str, LLMResult] = {}
        if errors and cfg.batch_on_error == "online":
            retry = [r for h, r in zip(hashes, requests, strict=True) if h in errors]
            again, more = asyncio.run(self.agenerate(retry, stage))  # agenerate is the online path
            online = {res.request_hash: res for res in again}
            stats.merge(more)
        results = []
        for h, r in zip(hashes, requests, strict=True):
            if h in online:
                results.append(replace(online[h], key=r.key))
            elif h in answered:
                a = answered[h]
                hit = h in cached
                stats.cache_hits += hit
                results.append(
                    LLMResult(
                        r.key, h, a.content, None, hit, a.prompt_tokens, a.completion_tokens, a.finish_reason
                    )
                )
            else:
                stats.failures += 1
                results.append(LLMResult(r.key, h, None, errors.get(h, "batch: no answer")))
        stats.requests = len(requests)
        if outcome is not None:
            run.forget()  # every answer is in the cache, every error in the results: the record is done
        return results, stats

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

    def _budget(self) -> RunBudget | None:
        """The run's budget, shared through the cache with every stage and worker of the run (or of
        ``budget_scope``: the runs that share one, the shards of a night)."""
        cfg = self.config
        if cfg.max_run_tokens is None and cfg.max_run_cost_usd is None:
            return None
        scope = cfg.budget_scope or self.run_id
        return RunBudget(self.cache, scope, cfg.max_run_tokens, cfg.max_run_cost_usd, 3 * HOLD_RENEW_S)

    async def _renew(self, budget: RunBudget) -> None:
        """Renew this gateway's hold while it runs, so that only a dead worker's hold lapses."""
        while True:
            await asyncio.sleep(HOLD_RENEW_S)
            if budget.tokens or budget.cost:
                self.cache.put_many([], [], budget.hold())

    def _reserve_cost(self, r: LLMRequest, tokens: int) -> float:
        """Worst-case dollars of a request: its worst-case tokens at the model's prices (0 unpriced)."""
        if self.config.max_run_cost_usd is None:
            return 0.0
        if self._pricer is None:
            from personahub_dagster.core.llm.transports import Pricer

            self._pricer = Pricer(self.config.model)
        out = int(self.request_params(r.params).get("max_tokens", self.config.max_tokens))
        return self._pricer(None, max(0, tokens - out), out) or 0.0

    def _reserve(self, r: LLMRequest) -> int:
        """Worst-case tokens of a request: its prompt (about 4 characters a token) plus max_tokens."""
        prompt = sum(len(m.get("content") or "") for m in r.messages) // 4 + 8 * len(r.messages)
        return prompt + int(self.request_params(r.params).get("max_tokens", self.config.max_tokens))

    # -- internals -----------------------------------------------------------------------------
    async def _call_with_retries(self, h: str, r: LLMRequest, stage: str, stats: GatewayStats) -> LLMResult:
        """Attempts until one answers, the failure is not transient, or ``max_retries`` retries are
        spent. Between attempts: the provider's Retry-After when it gave one (capped at
        ``retry_after_max_s``), else exponential backoff with jitter (tenacity's formula). A plain loop,
        not a tenacity ``AsyncRetrying``: building one costs ~150 µs, a quarter of the per-request
        budget at full speed, and almost every request succeeds at once."""
        cfg = self.config
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(h, r, stage, attempt, stats)
            except _AttemptFailed as exc:
                if exc.transient and attempt <= cfg.max_retries:
                    stats.retries += 1
                    await asyncio.sleep(self._backoff_s(attempt, exc.retry_after))
                    continue
                stats.failures += 1
                reason = f"gave up after {attempt} attempts: {exc}" if exc.transient else str(exc)
                return LLMResult(r.key, h, None, reason)

    def _backoff_s(self, attempts_failed: int, retry_after: float | None) -> float:
        cfg = self.config
        wait = self._backoff(SimpleNamespace(attempt_number=attempts_failed))
        return max(wait, min(retry_after, cfg.retry_after_max_s)) if retry_after else wait

    async def _attempt(
        self, h: str, r: LLMRequest, stage: str, attempt: int, stats: GatewayStats
    ) -> LLMResult:
        cfg = self.config
        messages = r.messages
        if self.scrubs_pii:
            messages = scrub_messages(messages)
            stats.scrubbed += (messages != r.messages) and attempt == 1
        params = self.request_params(r.params)
        estimate = self._prompt_tokens(messages) if self.pacer.tpm else 0
        sent_at = await self.pacer.acquire(estimate + int(params.get("max_tokens", 0)))
        started = time.perf_counter()
        stats.calls += 1
        try:
            async with asyncio.timeout(cfg.timeout_s + 5):  # no extra task per call, unlike wait_for
                out = await self.transport.complete(messages, params, cfg.timeout_s)
        except Exception as exc:
            import litellm

            asked = retry_after_s(exc)
            if is_rate_limit(exc):
                stats.rate_limited += 1
                wait = min(asked, cfg.retry_after_max_s) if asked is not None else None
                self.pacer.on_rate_limited(sent_at, wait, _error_headers(exc))
            else:
                self.pacer.on_failure()
            latency = time.perf_counter() - started
            transient = classify(exc)
            message = self._redact(f"{type(exc).__name__}: {exc}")[:2000]
            status = (
                "timeout" if isinstance(exc, asyncio.TimeoutError | litellm.exceptions.Timeout) else "error"
            )
            call = CallRecord(
                h, stage, cfg.model, attempt, None, None, None, latency, status, message, self.run_id
            )
            self._write(None, call)
            raise _AttemptFailed(message, transient, asked) from None
        except BaseException:  # cancelled: the slot is free again
            self.pacer.release()
            raise
        error = out.prompt_tokens - estimate if estimate and out.prompt_tokens else 0  # the estimate's miss
        latency = time.perf_counter() - started
        self.pacer.on_success(out.headers, error, latency)
        stats.latencies_s.append(latency)
        pt, ct, cost = out.prompt_tokens, out.completion_tokens, out.cost_usd
        stats.prompt_tokens += pt or 0
        stats.completion_tokens += ct or 0
        stats.cost_usd += cost or 0.0
        self._write(
            (h, cfg.model, CachedResponse(out.content, out.finish_reason, pt, ct)),
            CallRecord(h, stage, cfg.model, attempt, pt, ct, cost, latency, "ok", None, self.run_id),
        )
        return LLMResult(r.key, h, out.content, None, False, pt, ct, out.finish_reason, cost_usd=cost)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens by the model's tokenizer, plus the chat format's few per message."""
        return sum(self.count_tokens(m.get("content") or "") + 4 for m in messages)

    def _write(self, response: tuple[str, str, CachedResponse] | None, call: CallRecord) -> None:
        """Queue an answer and its journal row; everything queued during one turn of the event loop is
        committed together at the start of the next (a SIGKILL loses at most that turn's answers)."""
        if response is not None:
            self._pending_responses.append(response)
        self._pending_calls.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Commit what is queued. When the commit fails, the rows stay queued: the next turn, or the
        flush that ends :meth:`generate` (which raises), tries again — a paid call is never dropped."""
        self._flush_scheduled = False
        if self._pending_calls:
            responses, calls = self._pending_responses, self._pending_calls
            self._pending_responses, self._pending_calls = [], []
            hold = self._run_budget.hold() if self._run_budget is not None else None
            try:
                self.cache.put_many(responses, calls, hold)
            except Exception:
                self._pending_responses[:0], self._pending_calls[:0] = responses, calls
                raise

    def _redact(self, text: str) -> str:
        return redact(text, (self.config.key,)) or ""
