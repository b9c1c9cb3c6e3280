"""Batch mode of the gateway: a stage's requests answered by the provider's batch API (:mod:`.run`),
through the same response cache and call journal as online calls, with results in request order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from personahub_dagster.core.llm.batch.provider import ProviderBatches, batch_endpoint
from personahub_dagster.core.llm.cache.records import CachedResponse
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.pii import scrub_messages
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.storage.store import Store


class BatchingGateway(Protocol):
    """What batch mode uses of the gateway (:class:`~personahub_dagster.core.llm.gateway.LLMGateway`):
    named here so that the gateway imports this module, and not the other way round."""

    config: LLMConfig
    cache: ResponseCache
    batch_store: Store | None
    run_id: str
    log: Callable[[str], None]
    batch_context: dict[str, str] | None

    @property
    def scrubs_pii(self) -> bool: ...
    def fingerprint(self, request: LLMRequest) -> str: ...
    def request_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]: ...
    async def agenerate(
        self, requests: Iterable[LLMRequest], stage: str
    ) -> tuple[list[LLMResult], GatewayStats]: ...


def generate_batch(
    gateway: BatchingGateway, requests: list[LLMRequest], stage: str
) -> tuple[list[LLMResult], GatewayStats]:
    """Answer every request from the cache or the provider's batch API (:mod:`.run`); results in
    request order, as the online path gives them. Requests the batch answered with an error are errors,
    or are asked online (``batch_on_error``)."""
    from personahub_dagster.core.llm.batch.run import (
        BATCH_DISCOUNT,
        STATE_FOLDER,
        BatchRun,
        BatchSettings,
        journal_rows,
    )
    from personahub_dagster.core.llm.transports import Pricer

    cfg, stats = gateway.config, GatewayStats()
    endpoint = batch_endpoint(cfg)
    pricer = Pricer(cfg.model)
    if gateway.batch_store is None:
        raise ValueError("batch mode needs a place to record its batches (the lake)")
    hashes = [gateway.fingerprint(r) for r in requests]
    cached = gateway.cache.get_many(list(dict.fromkeys(hashes)))
    bodies: dict[str, dict] = {}
    for h, r in zip(hashes, requests, strict=True):
        if h not in cached and h not in bodies:
            messages = scrub_messages(r.messages) if gateway.scrubs_pii else r.messages
            stats.scrubbed += messages != r.messages
            bodies[h] = {
                "model": endpoint.model,
                "messages": messages,
                **gateway.request_params(r.params),
            }

    def store(answers: dict[str, CachedResponse], costs: dict[str, float | None]) -> None:
        gateway.cache.put_many(*journal_rows(answers, costs, stage, cfg.model, gateway.run_id))

    def price(pt: int | None, ct: int | None) -> float | None:
        online = pricer(None, pt, ct)
        return None if online is None else online * BATCH_DISCOUNT

    api = ProviderBatches(endpoint, cfg.key, cfg.timeout_s)
    run = BatchRun(
        api,
        gateway.batch_store.child(STATE_FOLDER),
        stage,
        hashes,
        BatchSettings(cfg.batch_poll_s, cfg.batch_max_wait_s, cfg.batch_max_requests),
        store,
        price,
        log=gateway.log,
        context=gateway.batch_context,
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
        again, more = asyncio.run(gateway.agenerate(retry, stage))  # agenerate is the online path
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
