"""One request's attempts, and the rows they leave: the gateway's retry loop and its journal.

Every attempt — answered, failed or timed out — is one ``llm_calls`` row; an answer and its row are
queued and committed together at the next turn of the event loop, so a crash loses at most one turn's
answers and a paid call is never dropped by a failed commit (the rows stay queued and are tried again)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from personahub_dagster.core.config.secrets import redact
from personahub_dagster.core.llm.cache.records import CachedResponse, CallRecord
from personahub_dagster.core.llm.pii import scrub_messages
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.llm.retry import (
    AttemptFailed,
    classify,
    error_headers,
    is_rate_limit,
    retry_after_s,
)


class Attempts:
    """The retry loop of :class:`~personahub_dagster.core.llm.gateway.LLMGateway` (a base of it): what
    an attempt needs — config, transport, pacer, cache — is the gateway's."""

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
            except AttemptFailed as exc:
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
                self.pacer.on_rate_limited(sent_at, wait, error_headers(exc))
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
            raise AttemptFailed(message, transient, asked) from None
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
