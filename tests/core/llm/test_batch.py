"""Batch mode against the fake server's ``/v1/files`` and ``/v1/batches`` (time compressed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.batch.provider import BatchError
from personahub_dagster.core.llm.batch.run import STATE_FOLDER, BatchPending, split
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.results import LLMRequest
from personahub_dagster.core.stages.personas import text_to_persona
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeBatches, FakeOpenAI

ROOT = Path(__file__).resolve().parents[3]


def reqs(n: int, prefix: str = "q") -> list[LLMRequest]:
    return [LLMRequest(f"k{i}", [{"role": "user", "content": f"{prefix} {i}"}]) for i in range(n)]


def test_a_batch_answers_like_online_calls_at_half_the_price_and_fills_the_cache(
    tmp_path, make_batch_gateway
):
    with FakeOpenAI(batches=FakeBatches()) as server:
        results, stats = make_batch_gateway(server).generate(reqs(12), "t")
        assert server.requests == []  # nothing went through /chat/completions
        assert [r.content for r in results] == [f"Echo: q {i}" for i in range(12)]
        assert len(stats.batch_ids) == 1 and stats.batch_submitted == 12
        calls = ResponseCache(tmp_path / "cache.sqlite").calls_frame()
        online_price = 0.15e-6 * calls["prompt_tokens"][0] + 0.6e-6 * calls["completion_tokens"][0]
        assert calls["cost_usd"][0] == pytest.approx(online_price / 2)  # gpt-4o-mini, batch price
        # the same requests online: every answer from the cache, nothing sent
        _again, more = make_batch_gateway(server, mode="online").generate(reqs(12), "t")
    assert server.requests == [] and more.cache_hits == 12
    assert not list(Lake(tmp_path / "lake").files.child(STATE_FOLDER).list())  # record removed when done


def test_batches_are_split_at_the_providers_limits():
    lines = [b"x" * 10 + b"\n"] * 25
    assert [len(p) for p in split(lines, 10, 10_000)] == [10, 10, 5]
    assert [len(p) for p in split(lines, 100, 55)] == [5, 5, 5, 5, 5]


def test_many_requests_go_in_several_batches(tmp_path, make_batch_gateway):
    with FakeOpenAI(batches=FakeBatches()) as server:
        results, stats = make_batch_gateway(server, batch_max_requests=10).generate(reqs(25), "t")
    assert len(stats.batch_ids) == 3 and all(r.ok for r in results)
    assert sorted(server.batches.submitted) == sorted({r.request_hash for r in results})


def test_an_expired_batch_resubmits_only_what_is_missing(tmp_path, make_batch_gateway):
    with FakeOpenAI(batches=FakeBatches(expire_first=1)) as server:
        results, _stats = make_batch_gateway(server).generate(reqs(10), "t")
    assert all(r.ok for r in results)
    first, second = (b["lines"] for b in server.batches.batches.values())
    assert len(first) == 10 and len(second) == 5  # the expired batch answered half; only that half again
    assert {x["custom_id"] for x in second}.isdisjoint({x["custom_id"] for x in first[:5]})


@pytest.mark.parametrize("on_error", ["reject", "online"])
def test_per_request_errors_become_errors_or_online_calls(tmp_path, on_error, make_batch_gateway):
    def fail(body: dict) -> bool:
        return body["messages"][-1]["content"].endswith(("3", "7"))

    with FakeOpenAI(batches=FakeBatches(fail=fail)) as server:
        results, _ = make_batch_gateway(server, batch_on_error=on_error).generate(reqs(10), "t")
    failed = [r for r in results if not r.ok]
    if on_error == "reject":
        assert [r.key for r in failed] == ["k3", "k7"]
        assert all("injected per-request error" in r.error for r in failed)
        assert server.requests == []
    else:
        assert failed == [] and len(server.requests) == 2  # the two asked online, nothing else


def test_a_malformed_output_file_fails_clearly_and_keeps_what_it_could_read(tmp_path, make_batch_gateway):
    with FakeOpenAI(batches=FakeBatches(malformed=True)) as server, pytest.raises(BatchError) as err:
        make_batch_gateway(server).generate(reqs(6), "t")
    message = str(err.value)
    assert "batch_1" in message and "line 1 of output_file" in message and "5 answers" in message
    assert ResponseCache(tmp_path / "cache.sqlite").journal_size() == 5


def test_waiting_past_the_limit_keeps_the_record_and_the_next_run_only_polls(tmp_path, make_batch_gateway):
    batches = FakeBatches()
    batches.hold.set()
    with FakeOpenAI(batches=batches) as server:
        with pytest.raises(BatchPending) as err:
            make_batch_gateway(server, batch_max_wait_s=0.2).generate(reqs(8), "t")
        assert err.value.batch_ids == ["batch_1"] and "next run" in str(err.value)
        batches.hold.clear()
        results, stats = make_batch_gateway(server).generate(reqs(8), "t")
    assert all(r.ok for r in results) and stats.batch_submitted == 0
    assert len(server.batches.submitted) == 8  # submitted once


_WAITER = """
import sys
from pathlib import Path

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.gateway import LLMConfig, LLMGateway, LLMRequest
from personahub_dagster.core.llm.cache.sqlite import ResponseCache

tmp, base = Path(sys.argv[1]), sys.argv[2]
config = LLMConfig(model="openai/gpt-4o-mini", api_base=base, api_key="sk-test-batch", mode="batch",
                   batch_poll_s=0.01, timeout_s=10.0)
g = LLMGateway(config, ResponseCache(tmp / "cache.sqlite"), Lake(tmp / "lake").files)
requests = [LLMRequest(f"k{i}", [{"role": "user", "content": f"q {i}"}]) for i in range(20)]
results, stats = g.generate(requests, "t")
print("OK", sum(r.ok for r in results), stats.batch_submitted, flush=True)
"""


def test_a_run_killed_while_waiting_resumes_by_polling_and_submits_nothing_again(tmp_path):
    batches = FakeBatches()
    batches.hold.set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with FakeOpenAI(batches=batches) as server:
        first = subprocess.Popen(
            [sys.executable, "-c", _WAITER, str(tmp_path), server.base_url], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        record = Lake(tmp_path / "lake").files.child(STATE_FOLDER)
        deadline = time.monotonic() + 60
        while not record.list() or not batches.batches:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)  # polling now
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        saved = json.loads(record.get(record.list()[0]))
        assert [b["id"] for b in saved["batches"]] == ["batch_1"]
        batches.hold.clear()
        second = subprocess.run(
            [sys.executable, "-c", _WAITER, str(tmp_path), server.base_url], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.split()[-3:] == ["OK", "20", "0"]  # all answered, 0 submitted by the resume
    assert len(batches.batches) == 1 and len(batches.submitted) == 20


def test_a_stage_runs_in_batch_mode(tmp_path, make_batch_gateway):
    import polars as pl

    texts = pl.DataFrame(
        {
            "text_id": [f"t-{i:020x}" for i in range(3)],
            "text": [f"A long article about sailing and navigation number {i}." for i in range(3)],
        }
    )

    def persona(_n: int, body: dict) -> tuple[str, str]:
        return "ok", "A retired merchant navy officer who teaches celestial navigation to teenagers."

    with FakeOpenAI(script=persona, batches=FakeBatches()) as server:
        g = make_batch_gateway(server)
        out = text_to_persona(texts, g, load_prompt("text_to_persona"), perspectives=["read"], partition="d")
    assert out.rows.height == 3 and server.requests == [] and len(server.batches.batches) == 1
    assert out.stats.batch_ids == ["batch_1"]


def test_batches_go_to_the_direct_endpoint_or_openais_own_and_nowhere_else(tmp_path):
    from personahub_dagster.core.llm.batch.provider import batch_endpoint

    def endpoint(model: str, api_base: str | None = None) -> tuple[str, str]:
        where = batch_endpoint(LLMConfig(model=model, api_base=api_base))
        return where.api_base, where.model

    assert endpoint("openai/gpt-4o-mini") == ("https://api.openai.com/v1", "gpt-4o-mini")
    assert endpoint("openai/smollm2", "http://10.0.0.5:8000/v1/") == ("http://10.0.0.5:8000/v1", "smollm2")
    with pytest.raises(ValueError, match="has none here"):
        endpoint("anthropic/claude-3-5-haiku-20241022")


def test_the_report_counts_batch_calls_and_prices_them_once(tmp_path, make_batch_gateway):
    """Batch calls are journaled as such (``mode`` batch, no latency): the report counts them, and its
    "all batch" column halves only the online calls' price — a batch call's is halved already."""
    from personahub_dagster.core.evaluation.report import build_report
    from personahub_dagster.core.lake.schemas import rows_frame

    with FakeOpenAI(batches=FakeBatches()) as server:
        make_batch_gateway(server).generate(reqs(12), "t")
        make_batch_gateway(server, mode="online").generate(reqs(16), "t")  # 12 cached, 4 online
    calls = ResponseCache(tmp_path / "cache.sqlite").calls_frame()
    batch, online = calls.filter(calls["mode"] == "batch"), calls.filter(calls["mode"] == "online")
    assert batch.height == 12 and online.height == 4 and batch["latency_s"].is_null().all()
    assert online["latency_s"].is_not_null().all()
    lake = Lake(tmp_path / "lake", cache=tmp_path / "cache.sqlite")
    lake.response_cache()  # opened: the next write mirrors the journal into llm_calls
    lake.write("rejects", rows_frame("rejects", []), producer="t", partition="p")
    html = build_report(lake)
    cost, online_cost = calls["cost_usd"].sum(), online["cost_usd"].sum()
    row = [f'<td class="n">{v}</td>' for v in ("16", "16")]  # attempts, ok
    assert "<td>t</td><td>openai/gpt-4o-mini</td>" + "".join(row) in html
    assert f'<td class="n">12</td><td class="n">{round(cost, 6):,.4g}</td>' in html  # batch_calls, cost
    assert f'<td class="n">{round(cost - online_cost / 2, 6):,.4g}</td>' in html  # all batch: online halved
