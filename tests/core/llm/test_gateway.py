"""The LLM gateway against a local fake OpenAI-compatible server: cache, retries, timeouts, accounting."""

from __future__ import annotations

import time

import pytest

from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI

FAKE_KEY = "sk-fake-0123456789abcdef"


def gateway(tmp_path, server: FakeOpenAI, **overrides) -> LLMGateway:
    cfg = dict(
        model="openai/fake-model",
        api_base=server.base_url,
        api_key=FAKE_KEY,
        concurrency=4,
        timeout_s=5.0,
        max_retries=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    cfg.update(overrides)
    return LLMGateway(LLMConfig(**cfg), ResponseCache(tmp_path / "cache.sqlite"))


def reqs(*texts: str) -> list[LLMRequest]:
    return [LLMRequest(f"k{i}", [{"role": "user", "content": t}]) for i, t in enumerate(texts)]


def test_results_come_back_in_order_with_usage(tmp_path):
    with FakeOpenAI() as server:
        results, stats = gateway(tmp_path, server).generate(reqs("alpha", "beta", "gamma"), "t")
    assert [r.content for r in results] == ["Echo: alpha", "Echo: beta", "Echo: gamma"]
    assert [r.key for r in results] == ["k0", "k1", "k2"]
    assert all(r.ok and not r.cached for r in results)
    assert stats.calls == 3 and stats.completion_tokens == 6 and stats.prompt_tokens == 3


def test_second_run_is_served_from_the_persistent_cache(tmp_path):
    with FakeOpenAI() as server:
        gateway(tmp_path, server).generate(reqs("alpha", "beta"), "t")
        assert len(server.requests) == 2
        # a new gateway object (as in a new process) over the same cache file
        results, stats = gateway(tmp_path, server).generate(reqs("alpha", "beta", "delta"), "t")
    assert len(server.requests) == 3  # only "delta" reached the server
    assert [r.cached for r in results] == [True, True, False]
    assert stats.cache_hits == 2 and stats.calls == 1
    assert results[0].content == "Echo: alpha"


def test_identical_requests_in_one_batch_are_sent_once(tmp_path):
    with FakeOpenAI() as server:
        results, _ = gateway(tmp_path, server).generate(reqs("same", "same", "same"), "t")
    assert len(server.requests) == 1
    assert [r.content for r in results] == ["Echo: same"] * 3


def test_cache_key_covers_model_and_sampling_params(tmp_path):
    with FakeOpenAI() as server:
        gw = gateway(tmp_path, server)
        base = LLMRequest("a", [{"role": "user", "content": "x"}])
        hot = LLMRequest("a", [{"role": "user", "content": "x"}], {"temperature": 1.3})
        other_model = gateway(tmp_path, server, model="openai/other")
        hashes = {gw.fingerprint(base), gw.fingerprint(hot), other_model.fingerprint(base)}
    assert len(hashes) == 3
    assert FAKE_KEY not in "".join(hashes)


def test_transient_errors_are_retried_then_succeed(tmp_path):
    def script(n, body):
        return ("status", 500) if n == 1 else ("status", 429) if n == 2 else ("ok", "finally")

    with FakeOpenAI(script) as server:
        gw = gateway(tmp_path, server)
        results, stats = gw.generate(reqs("x"), "retry")
    assert results[0].content == "finally"
    assert len(server.requests) == 3 and stats.retries == 2
    calls = gw.cache.calls_frame()
    assert calls["status"].to_list() == ["error", "error", "ok"]
    assert calls["attempt"].to_list() == [1, 2, 3]


def test_retries_stop_at_the_cap(tmp_path):
    with FakeOpenAI(lambda n, b: ("status", 503)) as server:
        results, stats = gateway(tmp_path, server, max_retries=2).generate(reqs("x"), "cap")
    assert not results[0].ok and "gave up after 3 attempts" in results[0].error
    assert len(server.requests) == 3 and stats.failures == 1


def test_client_errors_are_not_retried(tmp_path):
    with FakeOpenAI(lambda n, b: ("status", 400)) as server:
        results, _ = gateway(tmp_path, server).generate(reqs("x"), "bad")
    assert not results[0].ok
    assert len(server.requests) == 1


def test_a_hung_provider_times_out_and_is_recorded(tmp_path):
    with FakeOpenAI(lambda n, b: ("hang", 3.0)) as server:
        gw = gateway(tmp_path, server, timeout_s=0.4, max_retries=1)
        started = time.monotonic()
        results, _ = gw.generate(reqs("x"), "slow")
        elapsed = time.monotonic() - started
    assert not results[0].ok
    assert elapsed < 2.5, f"timeout not enforced: {elapsed:.1f}s"
    assert gw.cache.calls_frame()["status"].to_list() == ["timeout", "timeout"]
    assert gw.cache.get(results[0].request_hash) is None  # failures are never cached


def test_dropped_connections_are_retried(tmp_path):
    with FakeOpenAI(lambda n, b: ("drop", None) if n == 1 else ("ok", "after drop")) as server:
        results, _ = gateway(tmp_path, server).generate(reqs("x"), "drop")
    assert results[0].content == "after drop"


def test_concurrency_limit_is_respected(tmp_path):
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def script(n, body):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return ("ok", "x")

    with FakeOpenAI(script) as server:
        gateway(tmp_path, server, concurrency=3).generate(reqs(*[f"m{i}" for i in range(12)]), "c")
    assert peak[0] == 3


def test_the_api_key_never_reaches_errors_or_the_journal(tmp_path):
    def script(n, body):
        return ("status", 401)

    with FakeOpenAI(script) as server:
        gw = gateway(tmp_path, server)
        results, _ = gw.generate(reqs("x"), "auth")
    assert server.headers[0].get("authorization") == f"Bearer {FAKE_KEY}"  # it was used…
    assert FAKE_KEY not in (results[0].error or "")  # …but is stored nowhere
    assert FAKE_KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()
    assert FAKE_KEY not in repr(gw.config)


@pytest.mark.parametrize("bad", [[], None])
def test_empty_batch(tmp_path, bad):
    with FakeOpenAI() as server:
        results, stats = gateway(tmp_path, server).generate(bad or [], "empty")
    assert results == [] and stats.requests == 0


def test_each_model_gets_the_cheapest_correct_transport(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")

    def transport(**cfg: object) -> str:
        return LLMGateway(LLMConfig(**cfg), cache).transport.name

    assert transport() == "local"  # the embedded model: llama.cpp called directly
    assert transport(model="openai/fake", api_base="http://127.0.0.1:1/v1") == "openai-http"
    assert transport(model="hosted_vllm/qwen", api_base="http://127.0.0.1:1/v1") == "openai-http"
    assert transport(model="openai/gpt-4o-mini") == "litellm"  # no base URL: litellm maps its params
    assert transport(model="openai/gpt-4o-mini", fast_path=True) == "openai-http"
    assert transport(model="anthropic/claude-3-5-haiku-20241022") == "litellm"
    assert transport(model="openai/fake", api_base="http://127.0.0.1:1/v1", fast_path=False) == "litellm"


def test_a_provider_that_is_not_openai_compatible_goes_through_litellm(tmp_path):
    """Anthropic's API is not OpenAI's: litellm translates it. Its mock facility answers offline."""
    cfg = LLMConfig(model="anthropic/claude-3-5-haiku-20241022", api_key="sk-ant-fake", scrub_pii=False)
    gw = LLMGateway(cfg, ResponseCache(tmp_path / "cache.sqlite"))
    request = LLMRequest(
        "k", [{"role": "user", "content": "Who reads this?"}], {"mock_response": "A beekeeper."}
    )
    (res,), stats = gw.generate([request], "s")
    assert gw.transport.name == "litellm" and res.content == "A beekeeper." and stats.calls == 1
    assert stats.prompt_tokens > 0 and stats.completion_tokens > 0  # usage as litellm reports it
    (again,), stats = gw.generate([request], "s")
    assert again.cached and stats.calls == 0


def test_a_cache_from_before_run_ids_is_migrated_and_still_reads(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE llm_calls (request_hash TEXT NOT NULL, stage TEXT, model TEXT, attempt INTEGER, "
        "prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, latency_s REAL, status TEXT, "
        "error TEXT, created_at REAL NOT NULL)"
    )
    con.execute("INSERT INTO llm_calls VALUES ('h0', 's', 'm', 1, 5, 5, 0.0, 0.1, 'ok', NULL, 1.0)")
    con.commit()
    con.close()
    with FakeOpenAI() as server:
        gw = LLMGateway(
            LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-x"), ResponseCache(path)
        )
        gw.generate([LLMRequest("k", [{"role": "user", "content": "hi"}])], "s")
    frame = gw.cache.calls_frame()
    assert frame.height == 2 and frame["run_id"].to_list() == [None, gw.run_id]


def test_a_stage_s_requests_stream_through_a_bounded_queue(tmp_path):
    """The gateway consumes a stage's request generator no further ahead than its in-flight limit of
    unanswered calls: a day of prompts is never all in memory at once; every request is answered."""
    from personahub_dagster.core.llm.gateway import _CHUNK, in_flight_limit

    produced, ahead = [0], []

    def stream(server: FakeOpenAI, n: int):
        for i in range(n):
            ahead.append(produced[0] - len(server.requests))
            produced[0] += 1
            yield LLMRequest(f"k{i}", [{"role": "user", "content": f"question {i}"}])

    with FakeOpenAI(latency_s=0.002) as server:
        results, stats = gateway(tmp_path, server, concurrency=4).generate(stream(server, 1500), "q")
    assert len(results) == 1500 and all(r.ok for r in results) and stats.calls == 1500
    assert max(ahead) <= in_flight_limit(4) + _CHUNK + 4  # the queue, the chunk being built, in flight
    assert max(ahead) < 1500 // 2  # the generator did not run ahead of the calls
