"""One run budget and one rate limit for every worker on a key: the books in the response cache's
database (SQLite on one machine, Postgres for a team), exercised by several gateways at once against
the fake provider enforcing the key's limits."""

from __future__ import annotations

import threading
import time

import pytest

from personahub_dagster.core.llm.cache.backends import open_cache
from personahub_dagster.core.llm.cache.ledger import Hold
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.rate.latency import LatencyLimit
from personahub_dagster.core.llm.rate.pacer import Pacer
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI, ProviderLimits
from tests.support.timing import max_in_window


@pytest.fixture(params=["sqlite", "postgres"])
def cache_target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "cache.sqlite")
    return request.getfixturevalue("pg_url")


def gateway(target: str, server: FakeOpenAI, **overrides) -> LLMGateway:
    cfg = LLMConfig(
        model="openai/fake", api_base=server.base_url, api_key="sk-x", backoff_initial_s=0.01,
        max_tokens=32, **overrides,
    )  # fmt: skip
    return LLMGateway(cfg, open_cache(target))


def asks(n: int, tag: str) -> list[LLMRequest]:
    return [
        LLMRequest(f"{tag}{i}", [{"role": "user", "content": f"{tag} question {i} about bees"}])
        for i in range(n)
    ]


def together(*jobs):
    """Run each job in a thread of its own (each gateway runs its own event loop); their results."""
    out: list = [None] * len(jobs)

    def run(k: int) -> None:
        out[k] = jobs[k]()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(o is not None for o in out), "a worker did not finish"
    return out


def test_two_workers_of_a_run_never_pass_its_budget_together(cache_target):
    """Each worker alone would spend the whole cap; together they stop at it — a request is sent only
    when the run's spend, every worker's requests in flight and its own worst case fit."""
    cap, n = 1500, 150  # each worker's 150 requests alone would spend ~1,650 tokens
    with FakeOpenAI(latency_s=0.05) as server:
        gws = [gateway(cache_target, server, run_id="night", concurrency=8, max_run_tokens=cap) for _ in "ab"]
        jobs = [lambda g=g, t=t: g.generate(asks(n, t), t) for g, t in zip(gws, "ab", strict=True)]
        (ra, sa), (rb, sb) = together(*jobs)
    spent, _ = open_cache(cache_target).run_spend("night")
    answered = sum(r.ok for r in ra + rb)
    worst = gws[0]._reserve(asks(1, "a")[0])  # what one request holds while in flight
    assert spent <= cap  # the worst case is held while in flight: never past the cap
    assert spent >= cap - 2 * 8 * worst  # short of it by at most what two workers' requests in flight held
    assert sa.budget_exhausted and sb.budget_exhausted and "run token budget 1500" in sa.budget_exhausted
    assert answered == len(server.requests) < 2 * n and answered > 0
    assert sa.skipped + sb.skipped == 2 * n - answered


def test_a_dead_workers_hold_lapses_and_a_live_ones_does_not(cache_target):
    """A worker killed mid-request leaves its hold; once it lapses, the run's budget is free again."""
    cache = open_cache(cache_target)
    dead = Hold("run", "dead-worker", tokens=900, cost_usd=0.0, expires_at=time.time() + 1.0)
    assert cache.admit(Hold("run", "dead-worker", 0, 0.0, dead.expires_at), 900, 0.0, 1000, None).admitted
    blocked = cache.admit(Hold("run", "live", 0, 0.0, time.time() + 30), 200, 0.0, 1000, None)
    assert not blocked.admitted and not blocked.final  # held, not spent: worth waiting for
    time.sleep(1.2)
    books = cache.admit(Hold("run", "live", 0, 0.0, time.time() + 30), 200, 0.0, 1000, None)
    assert books.admitted and books.held_tokens == 0 and books.spent_tokens == 0


def test_the_spend_is_booked_with_the_journal_and_starts_from_it(cache_target):
    """The run's spend row is advanced by the transaction that journals the calls; a run journaled
    before the books existed starts from the journal's sum."""
    cache = open_cache(cache_target)
    with FakeOpenAI() as server:
        gw = gateway(cache_target, server, run_id="r1", max_run_tokens=10_000)
        gw.generate(asks(10, "s"), "s")
    tokens, _ = cache.run_spend("r1")  # summed from the journal itself
    books = cache.admit(Hold("r1", "x", 0, 0.0, time.time() + 30), 1, 0.0, 10_000, None)
    assert books.spent_tokens == tokens > 0 and books.held_tokens == 0  # every hold given back at the end


def test_workers_on_one_key_draw_from_one_bucket(cache_target):
    """Three workers, each configured with the key's whole RPM: drawing from the shared bucket they
    send at the key's rate together (and its 429s stay under 1%), not three times it."""
    rpm = 1200  # 20 a second
    with FakeOpenAI(limits=ProviderLimits(rpm=rpm), latency_s=0.02) as server:
        gws = [gateway(cache_target, server, concurrency=16, rpm=rpm, max_retries=8) for _ in range(3)]
        started = time.monotonic()
        outs = together(*(lambda g=g, k=k: g.generate(asks(60, f"w{k}"), f"w{k}") for k, g in enumerate(gws)))
        elapsed = time.monotonic() - started
    assert all(r.ok for results, _ in outs for r in results)
    assert len(server.limited) <= 2  # ≤ 1% of 180 refused
    assert max_in_window(server.times, 2.0) <= 20 + 2 * 20 + 2  # one bucket: a second's burst, then 20/s
    assert elapsed >= (180 - 20) / 20 * 0.9
    assert all(g.pacer.stats.draws > 0 for g in gws)


def test_without_a_shared_bucket_the_same_workers_overrun_the_key(tmp_path):
    """The same three workers, each on a cache of its own (nothing shared), each pacing at the whole
    RPM: the provider refuses many — what the shared bucket prevents."""
    rpm = 1200
    with FakeOpenAI(limits=ProviderLimits(rpm=rpm), latency_s=0.02) as server:
        gws = [
            gateway(
                str(tmp_path / f"c{k}.sqlite"),
                server,
                concurrency=16,
                rpm=rpm,
                max_retries=20,
                adaptive=False,
            )
            for k in range(3)
        ]
        together(*(lambda g=g, k=k: g.generate(asks(60, f"w{k}"), f"w{k}") for k, g in enumerate(gws)))
    assert len(server.limited) > 10


def test_sporadic_429s_cut_nothing_but_an_overrun_does():
    """One 429 in 25 answers is a provider's noise: no cut, the limit stays. Half refused is an
    overrun: rate and concurrency are cut."""
    pacer = Pacer(rpm=None, tpm=None, max_concurrency=16)
    for n in range(500):
        pacer.in_flight += 1
        if n % 25 == 24:
            pacer.on_rate_limited(time.monotonic(), None)
        else:
            pacer.on_success()
    assert pacer.stats.rate_limited == 20 and pacer.stats.cuts == 0 and pacer.limit == 16
    for n in range(40):
        pacer.in_flight += 1
        pacer.on_rate_limited(time.monotonic(), None) if n % 2 else pacer.on_success()
    assert pacer.stats.cuts >= 1 and pacer.limit <= 8


def test_aimd_grows_back_by_one_per_round_of_limit_answers():
    pacer = Pacer(rpm=None, tpm=None, max_concurrency=16, window=1)
    pacer.in_flight = 1
    pacer.on_rate_limited(time.monotonic(), None)
    for _ in range(3):
        pacer.in_flight = 1
        pacer.on_rate_limited(time.monotonic() + 1, None)
    assert pacer.limit == 1
    grown = []
    for _ in range(1 + 2 + 3):  # rounds of 1, 2 and 3 answers
        pacer.in_flight = 1
        pacer.on_success()
        grown.append(pacer.limit)
    assert grown == [2, 2, 3, 3, 3, 4]  # not one step per 20 answers: no collapse to one in flight


def test_the_latency_limit_finds_a_servers_slots_without_being_told():
    """A server with 12 slots queues the rest: latency flat up to 12 in flight, then growing. The
    Vegas limit climbs fast, then settles a few requests past the slots — full throughput, little
    queue — and a server that gets faster lets it grow again."""
    slots, service = 12, 0.1

    def latency(in_flight: float) -> float:
        return service * max(1.0, in_flight / slots)

    limit = LatencyLimit(max_concurrency=256)
    for _ in range(400):
        limit.observe(latency(limit.limit))
    assert slots + 1 <= limit.limit <= slots + 6
    slots = 40  # more replicas behind the endpoint
    for _ in range(4000):
        limit.observe(latency(limit.limit))
    assert 40 < limit.limit <= 46
