"""Requests- and tokens-per-minute budgets and AIMD, against the fake provider enforcing a key's limits
(one-second token buckets, 429 + Retry-After beyond them, x-ratelimit-* headers on every answer)."""

from __future__ import annotations

import asyncio
import time

import pytest

from personahub_dagster.core.llm.rate.headers import reset_seconds
from personahub_dagster.core.llm.rate.pacer import Pacer
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI, ProviderLimits
from tests.support.timing import max_in_window

# the conftest gateway, with short answers and many quick retries (429s are the point here)
PATIENT = {"max_tokens": 32, "max_retries": 8, "backoff_initial_s": 0.05, "backoff_max_s": 0.5}


def requests(n: int, tag: str = "") -> list[LLMRequest]:
    return [
        LLMRequest(f"{tag}{i}", [{"role": "user", "content": f"question {tag} {i} about bees"}])
        for i in range(n)
    ]


def test_reset_times_are_read_in_every_form_providers_send():
    assert reset_seconds("1s") == 1 and reset_seconds("20ms") == 0.02 and reset_seconds("6m0s") == 360
    assert reset_seconds("1h2m3.5s") == 3723.5 and reset_seconds("0.25") == 0.25
    assert reset_seconds("soon") is None and reset_seconds(None) is None


def test_a_burst_stays_within_the_budgets_and_nothing_is_lost_or_paid_twice(make_gateway):
    """200 requests at once, concurrency 64, against 1,200 RPM: the gateway paces them — the provider
    refuses (almost) none and answers each once, and the rate is the budget's, not less."""
    limits = ProviderLimits(rpm=1200, tpm=60_000)
    with FakeOpenAI(limits=limits, latency_s=0.02) as server:
        gw = make_gateway(server, **PATIENT, concurrency=64, rpm=1200, tpm=60_000)
        started = time.monotonic()
        results, stats = gw.generate(requests(200), "burst")
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results) and len(results) == 200
    assert len(server.requests) == 200  # each answered once: none paid twice
    assert len(server.limited) <= 2  # ≤ 1% refused
    # a one-second bucket: at most a second's allowance at once, then 20 a second (1,200 RPM); a 429
    # (network jitter on a busy machine) may halve the pace for a while, never raise it
    assert max_in_window(server.times, 2.0) <= 20 + 2 * 20 + 1
    assert elapsed >= (200 - 20) / 20 * 0.95
    assert stats.rate_limited == len(server.limited)
    assert stats.sent_per_minute is not None and stats.sent_per_minute <= 1.1 * 1200
    if not server.limited:
        assert stats.sent_per_minute >= 0.9 * 1200


def test_the_token_budget_paces_when_tokens_run_out_first(make_gateway):
    """A TPM that allows ~9 requests a second of this size, under an RPM that would allow 50."""
    tokens = 4 + 32  # about 4 words a prompt (the fake counts words) + max_tokens
    with FakeOpenAI(limits=ProviderLimits(rpm=3000, tpm=60 * 9 * tokens), latency_s=0.01) as server:
        gw = make_gateway(server, **PATIENT, concurrency=32, rpm=3000, tpm=60 * 9 * tokens)
        results, _ = gw.generate(requests(120), "tokens")
    assert all(r.ok for r in results)
    assert len(server.limited) <= 2
    assert max_in_window(server.times, 2.0) <= 9 * 1.5 + 2 * 9 * 1.5  # tokens, not requests, set the pace


def test_aimd_backs_off_on_429s_and_recovers_when_the_limit_is_raised(make_gateway):
    """The key is configured higher than the provider allows: 429s cut the rate; when the provider's
    limit is raised mid-run, the gateway grows back toward its budget. Nothing lost or paid twice."""
    limits = ProviderLimits(rpm=600)  # 10 a second, while the gateway thinks it has 3,000 RPM
    with FakeOpenAI(limits=limits, latency_s=0.01) as server:
        gw = make_gateway(server, **PATIENT, concurrency=32, rpm=3000)

        async def run():
            task = asyncio.create_task(gw.agenerate(requests(300), "aimd"))
            deadline = time.monotonic() + 60
            while len(server.requests) < 40:
                assert time.monotonic() < deadline, "40 answers did not come in 60 s"
                await asyncio.sleep(0.05)
            low = len(server.requests) / (time.monotonic() - server.times[0])
            raised_at = time.monotonic()
            limits.set(rpm=3000, tpm=None)
            results, stats = await task
            return low, raised_at, results, stats

        low, raised_at, results, stats = asyncio.run(run())
    print(
        f"\nlow {low:.1f}/s, cuts {gw.pacer.stats.cuts}, 429s {len(server.limited)}, factor {gw.pacer.factor}"
    )
    assert all(r.ok for r in results) and len(server.requests) == 300
    assert stats.rate_limited >= 1 and gw.pacer.stats.cuts >= 1
    # after the raise, the rate climbs back to the budget, well above what the low limit allowed
    late = [t for t in server.times if t > raised_at + 2.0]
    assert late and len(late) / (server.times[-1] - late[0] + 1e-9) > 2 * low
    assert gw.pacer.factor == 1.0
    # the opening burst of a budget five times too high is refused, then the storm is cut short
    assert len(server.limited) <= 0.15 * 300


def test_a_429_halves_rate_and_concurrency_once_per_episode_then_grows_back():
    pacer = Pacer(rpm=600, tpm=None, max_concurrency=16, window=4)

    async def sent() -> float:
        return await pacer.acquire(1)

    first, second = asyncio.run(sent()), asyncio.run(sent())
    pacer.on_rate_limited(first, None)
    pacer.on_rate_limited(second, None)  # sent before the cut: the same episode
    assert pacer.stats.cuts == 1 and pacer.factor == 0.5 and pacer.limit == 8
    for _ in range(8):
        asyncio.run(sent())
        pacer.on_success()
    assert pacer.factor == pytest.approx(0.6) and pacer.limit == 9  # one window (8 = the limit) of successes
    fixed = Pacer(rpm=600, tpm=None, max_concurrency=16, adaptive=False)
    fixed.on_rate_limited(asyncio.run(fixed.acquire(1)), 5.0)
    assert fixed.factor == 1.0 and fixed.limit == 16  # no AIMD when asked not to


def test_a_workers_share_of_the_key_is_its_budget():
    assert Pacer(rpm=1200, tpm=100_000, max_concurrency=8, share=0.5).allowed_rpm == 600
    with pytest.raises(ValueError, match="share"):
        Pacer(rpm=1200, tpm=None, max_concurrency=8, share=0)


def test_a_spent_allowance_in_the_headers_pauses_before_a_429():
    pacer = Pacer(rpm=None, tpm=None, max_concurrency=4)
    asyncio.run(pacer.acquire(1))
    pacer.on_success({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"})
    started = time.monotonic()
    asyncio.run(pacer.acquire(1))
    assert time.monotonic() - started >= 0.25 and pacer.stats.steered == 1
