"""Fault injection: a stage under a 30% mix of provider faults finishes and loses nothing.

The fake provider (127.0.0.1 only) decides each request's fate from a hash of its body, so a fault is
tied to an input, not to arrival order: 429 with Retry-After, 500/503, hangs past the timeout,
dropped connections, responses cut in half, malformed JSON, a provider that keeps failing, and
answers that arrive but are useless (empty, a refusal, cut off by the token limit).
"""

from __future__ import annotations

import hashlib
import threading
import time

import polars as pl
import pytest

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest
from personahub_dagster.core.stages.personas import text_to_persona
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

N_TEXTS = 520
RETRY_AFTER_S = 0.3
MAX_RETRIES = 3

# (fault, share in percent): transient ones hit the first attempt only, the rest are the input's fate.
PLAN = [
    ("retry_after", 6),
    ("503", 5),
    ("500", 4),
    ("hang", 3),
    ("drop", 3),
    ("cut", 2),
    ("malformed", 2),
    ("always_503", 1),
    ("empty", 2),
    ("refusal", 1),
    ("length", 1),
]
TRANSIENT = {"retry_after", "503", "500", "hang", "drop", "cut", "malformed"}
JOBS = ["carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian", "welder"]


def fate(body: dict) -> str:
    h = int(hashlib.sha256(str(body["messages"]).encode()).hexdigest()[:8], 16) % 100
    edge = 0
    for fault, share in PLAN:
        edge += share
        if h < edge:
            return fault
    return "ok"


class FaultyProvider:
    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.fates: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, _n: int, body: dict) -> tuple[str, object]:
        key = str(body["messages"])
        with self.lock:
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            f = self.fates.setdefault(key, fate(body))
        h = hashlib.sha256(key.encode()).hexdigest()
        persona = f"A {JOBS[int(h[:2], 16) % len(JOBS)]} called {h[:8]} who teaches evening classes nearby."
        if f in TRANSIENT and attempt > 1:
            return "ok", persona
        return {
            "retry_after": ("retry_after", RETRY_AFTER_S),
            "503": ("status", 503),
            "500": ("status", 500),
            "hang": ("hang", 3.0),
            "drop": ("drop", None),
            "cut": ("cut", None),
            "malformed": ("malformed", None),
            "always_503": ("status", 503),
            "empty": ("ok", ""),
            "refusal": ("ok", "I'm sorry, but I can't help with that request."),
            "length": ("length", "A retired"),
            "ok": ("ok", persona),
        }[f]


def texts(n: int) -> pl.DataFrame:
    return rows_frame(
        "source_texts",
        [
            {
                "text_id": f"t-{i:05d}",
                "partition": "d",
                "text": f"Document {i}: notes on regional history, local crafts and community event {i}.",
                "ingested_at": now_utc(),
            }
            for i in range(n)
        ],
    )


def fake_gateway(tmp_path, server: FakeOpenAI, **config: object) -> LLMGateway:
    cfg = LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-x", **config)
    return LLMGateway(cfg, ResponseCache(tmp_path / "cache.sqlite"))


@pytest.mark.parametrize("fast_path", [None, False], ids=["direct-http", "litellm"])
def test_a_stage_survives_a_30_percent_fault_mix_and_loses_nothing(tmp_path, fast_path):
    provider = FaultyProvider()
    with FakeOpenAI(provider) as server:
        gw = fake_gateway(
            tmp_path,
            server,
            fast_path=fast_path,
            concurrency=32,
            timeout_s=1.0,
            max_retries=MAX_RETRIES,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
        )
        out = text_to_persona(
            texts(N_TEXTS), gw, load_prompt("text_to_persona"), perspectives=["read"], partition="d"
        )
    fates = provider.fates
    faulty = {k: f for k, f in fates.items() if f != "ok"}
    assert len(fates) == N_TEXTS >= 500
    assert 0.25 <= len(faulty) / len(fates) <= 0.35  # the mix is ~30%

    # Nothing lost: every input is exactly one row or one reject.
    inputs = {f"t-{i:05d}|read" for i in range(N_TEXTS)}
    outputs = {f"{r['source_text_id']}|{r['perspective']}" for r in out.rows.iter_rows(named=True)}
    rejected = set(out.rejects["input_id"])
    assert outputs | rejected == inputs and not outputs & rejected
    assert out.rows.height + out.rejects.height == N_TEXTS
    assert out.rejects["reason"].is_not_null().all()

    # Transient faults were survived: those inputs all became rows.
    by_fate = {f: sum(1 for x in fates.values() if x == f) for f in {*fates.values()}}
    survived = sum(n for f, n in by_fate.items() if f in TRANSIENT | {"ok"})
    assert out.rows.height == survived
    # Permanent ones are rejects with their reason.
    reasons = out.rejects["reason"].to_list()
    assert sum("gave up after 4 attempts" in r for r in reasons) == by_fate.get("always_503", 0)
    assert len(reasons) == sum(by_fate.get(f, 0) for f in ("always_503", "empty", "refusal", "length"))

    # Retries are capped ...
    for key, f in fates.items():
        expected = {"ok": 1, "always_503": MAX_RETRIES + 1, "empty": 1, "refusal": 1, "length": 1}.get(f, 2)
        assert provider.attempts[key] == expected, (f, provider.attempts[key])
    # ... and respect Retry-After: the second attempt never came sooner than the provider asked.
    arrivals: dict[str, list[float]] = {}
    for body, t in zip(server.requests, server.times, strict=True):
        arrivals.setdefault(str(body["messages"]), []).append(t)
    gaps = [arrivals[k][1] - arrivals[k][0] for k, f in fates.items() if f == "retry_after"]
    assert gaps and min(gaps) >= RETRY_AFTER_S - 0.01
    assert gw.transport.name == ("openai-http" if fast_path is None else "litellm")
    print(
        f"\n{gw.transport.name}: {len(server.requests)} requests for {N_TEXTS} inputs; "
        f"faulty inputs {len(faulty)} "
        f"({len(faulty) / N_TEXTS:.0%}): {dict(sorted(by_fate.items()))}; rows {out.rows.height}, "
        f"rejects {out.rejects.height}, lost 0; retries {out.stats.retries}; "
        f"shortest Retry-After wait {min(gaps):.3f} s"
    )


def test_retry_after_is_capped(tmp_path):
    with FakeOpenAI(lambda n, b: ("retry_after", 3600) if n == 1 else ("ok", "fine")) as server:
        gw = fake_gateway(tmp_path, server, backoff_initial_s=0.01, retry_after_max_s=0.2)
        started = time.monotonic()
        (res,), _ = gw.generate([LLMRequest("k", [{"role": "user", "content": "hi"}])], "s")
        assert res.content == "fine" and 0.2 <= time.monotonic() - started < 5


def test_a_token_budget_stops_the_stage_with_what_was_done_kept(tmp_path):
    with FakeOpenAI(lambda n, b: ("ok", "A carpenter who restores old barns in the valley.")) as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        cfg = dict(
            model="openai/fake", api_base=server.base_url, api_key="sk-x", concurrency=4, max_tokens=50
        )
        tpl = load_prompt("text_to_persona")
        gw = LLMGateway(LLMConfig(**cfg, max_run_tokens=1500, run_id="run-1"), cache)
        out = text_to_persona(texts(40), gw, tpl, perspectives=["read"], partition="d")
        spent, _ = cache.run_spend("run-1")
        assert 0 < out.rows.height < 40 and spent <= 1500
        assert out.rows.height + out.rejects.height == 40
        assert out.stats.budget_exhausted and "run token budget 1500" in out.stats.budget_exhausted
        assert set(out.rejects["reason"].str.split(":").list.first()) == {"budget_exhausted"}

        # The same run id in another stage (another process) sees the spend: it sends at most what
        # still fits, and the run as a whole stays under the cap.
        again = LLMGateway(LLMConfig(**cfg, max_run_tokens=1500, run_id="run-1"), cache)
        more = text_to_persona(texts(40)[20:], again, tpl, perspectives=["read"], partition="d")
        assert more.stats.skipped > 0 and cache.run_spend("run-1")[0] <= 1500
        paid = len(server.requests)

        # A bigger budget in a new run finishes the work; the paid answers come from the cache.
        bigger = LLMGateway(LLMConfig(**cfg, max_run_tokens=100_000, run_id="run-2"), cache)
        done = text_to_persona(texts(40), bigger, tpl, perspectives=["read"], partition="d")
        assert done.rows.height == 40
        assert done.stats.cache_hits == paid and done.stats.calls == 40 - paid == len(server.requests) - paid


def test_a_cost_budget_stops_before_the_next_request(tmp_path):
    with FakeOpenAI(lambda n, b: ("ok", "A carpenter who restores old barns in the valley.")) as server:
        # gpt-4o-mini has a price in litellm's bundled cost map, so each call costs something.
        cfg = LLMConfig(
            model="openai/gpt-4o-mini",
            api_base=server.base_url,
            api_key="sk-x",
            concurrency=1,
            max_run_cost_usd=0.0001,
        )
        gw = LLMGateway(cfg, ResponseCache(tmp_path / "cache.sqlite"))
        out = text_to_persona(
            texts(30), gw, load_prompt("text_to_persona"), perspectives=["read"], partition="d"
        )
    # each request holds its worst-case price while in flight: the run stops before it passes the cap
    assert 0 < out.rows.height < 30 and 0 < out.stats.cost_usd <= 0.0001
    assert "run cost budget $0.0001" in out.stats.budget_exhausted
    assert len(server.requests) == out.rows.height
