"""The response cache on a real Postgres, as many workers share it (``PERSONAHUB_CACHE=postgresql://…``)."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.cache.backends import open_cache
from personahub_dagster.core.llm.cache.postgres import PostgresResponseCache
from personahub_dagster.core.llm.cache.records import CachedResponse, CacheError, CallRecord
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI


def _gateway(url: str, base: str, **overrides) -> LLMGateway:
    cfg = dict(model="openai/fake", api_base=base, api_key="sk-test-0000", concurrency=8, timeout_s=10.0)
    cfg.update(overrides)
    return LLMGateway(LLMConfig(**cfg), open_cache(url))


def _requests(n: int) -> list[LLMRequest]:
    return [LLMRequest(f"k{i}", [{"role": "user", "content": f"question {i}"}]) for i in range(n)]


def test_answers_and_journal_are_shared_through_postgres(pg_url):
    with FakeOpenAI() as server:
        first, _ = _gateway(pg_url, server.base_url, run_id="r1").generate(_requests(30), "t")
        assert len(server.requests) == 30
        # a new gateway object over the same database (another worker): everything from the cache
        again, stats = _gateway(pg_url, server.base_url, run_id="r2").generate(_requests(31), "t")
    assert len(server.requests) == 31 and stats.cache_hits == 30
    assert [r.content for r in again[:30]] == [r.content for r in first]
    cache = PostgresResponseCache(pg_url)
    calls = cache.calls_frame()
    assert calls.height == 31 and set(calls["status"]) == {"ok"}
    assert calls["run_id"].to_list() == ["r1"] * 30 + ["r2"]
    assert cache.run_spend("r1")[0] == sum(r.prompt_tokens + r.completion_tokens for r in first)


def test_the_first_answer_stored_stays(pg_url):
    cache = PostgresResponseCache(pg_url)
    call = CallRecord("h1", "t", "m", 1, 1, 1, None, 0.1, "ok", None, "r")
    cache.put_many([("h1", "m", CachedResponse("first", "stop", 1, 1))], [call])
    cache.put_many([("h1", "m", CachedResponse("second", "stop", 1, 1))], [call])  # raced, paid, later
    assert cache.get("h1").content == "first"
    assert cache.journal_size() == 2  # both attempts were paid for, and both are in the journal


def _worker(url: str, base: str, n: int, barrier, out) -> None:
    gateway = _gateway(url, base, run_id="shared-run")
    barrier.wait(timeout=120)  # both imported and connected: go together
    results, stats = gateway.generate(_requests(n), "t")
    out.put((stats.calls, sum(r.ok for r in results)))


def test_two_workers_asking_the_same_requests_at_once_pay_at_most_twice(pg_url):
    """Two processes, one database, the same 40 requests released at the same instant against a provider
    that takes 0.5 s an answer: nothing is paid three times, every answer comes back, the journal holds
    exactly what the provider was paid for, and the run's spend is summed over both workers."""
    ctx = multiprocessing.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(2)
    with FakeOpenAI(latency_s=0.5) as server:
        procs = [ctx.Process(target=_worker, args=(pg_url, server.base_url, 40, barrier, out)) for _ in "ab"]
        for p in procs:
            p.start()
        answers = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    asked: dict[str, int] = {}
    for body in server.requests:
        asked[body["messages"][-1]["content"]] = asked.get(body["messages"][-1]["content"], 0) + 1
    assert len(asked) == 40 and max(asked.values()) <= 2
    assert len(server.requests) > 40  # the race did happen: some requests were asked by both
    assert all(ok == 40 for _, ok in answers)
    cache = PostgresResponseCache(pg_url)
    assert cache.journal_size() == len(server.requests) == sum(calls for calls, _ in answers)
    calls = cache.calls_frame()
    tokens, _ = cache.run_spend("shared-run")
    assert tokens == (calls["prompt_tokens"] + calls["completion_tokens"]).sum() > 0
    # a third worker of the same run with a token budget already spent by the two: sends nothing new
    with FakeOpenAI() as server:
        results, _ = _gateway(
            pg_url, server.base_url, run_id="shared-run", max_run_tokens=tokens + 5
        ).generate([LLMRequest("new", [{"role": "user", "content": "a new question " * 20}])], "t")
    assert server.requests == [] and results[0].error.startswith("budget_exhausted")


def test_a_wrong_postgres_setting_is_one_line_naming_it(pg_server):
    wrong = pg_server.url("no_such_database").replace("postgres@", "postgres:hunter2secret@")
    with pytest.raises(CacheError) as err:
        open_cache(wrong)
    message = str(err.value)
    assert message.startswith("PERSONAHUB_CACHE:") and "\n" not in message
    assert "no_such_database" in message and "hunter2secret" not in message


def test_the_lake_mirrors_a_postgres_journal_into_llm_calls(tmp_path, pg_url):
    with FakeOpenAI() as server:
        _gateway(pg_url, server.base_url).generate(_requests(3), "t")
    lake = Lake(tmp_path / "lake", cache=pg_url)
    assert lake.cache_path == pg_url and isinstance(lake.response_cache(), PostgresResponseCache)
    lake._mirror_call_journal()
    assert lake.read("llm_calls").height == 3


def test_concurrent_threads_of_one_worker_use_their_own_connections(pg_url):
    cache = PostgresResponseCache(pg_url)
    errors: list[BaseException] = []
    connections: set[int] = set()

    def put(i: int) -> None:
        try:
            connections.add(cache._conn().get_backend_pid())  # the server process behind the connection
            for j in range(20):
                h = f"h{i}-{j}"
                cache.put_many([(h, "m", CachedResponse(h, "stop", 1, 1))], [])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache.get_many([f"h{i}-{j}" for i in range(4) for j in range(20)])) == 80
    assert len(connections) == 4  # one connection (one server backend) per thread


def test_workers_committing_overlapping_answers_in_opposite_orders_never_deadlock(pg_url):
    """Two workers whose turns hold the same answers in opposite orders: each insert would wait on a
    row the other holds (a deadlock Postgres resolves by aborting one, journal rows and all) unless the
    cache takes its locks in one order. Every journal row must arrive."""
    caches = [PostgresResponseCache(pg_url) for _ in range(2)]
    hashes = [f"d{i:03d}" for i in range(300)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def commit(cache: PostgresResponseCache, order: list[str]) -> None:
        try:
            start.wait(timeout=30)
            for round_ in range(5):
                rows = [(f"{h}-{round_}", "m", CachedResponse(h, "stop", 1, 1)) for h in order]
                calls = [CallRecord(h, "t", "m", 1, 1, 1, None, 0.1, "ok", None, "dl") for h, _, _ in rows]
                cache.put_many(rows, calls)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=commit, args=(caches[0], hashes)),
        threading.Thread(target=commit, args=(caches[1], hashes[::-1])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert caches[0].calls_frame().filter(run_id="dl").height == 2 * 5 * 300
