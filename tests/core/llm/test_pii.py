"""Personal-data scrubbing: measured on the labelled set, and applied by the gateway to remote models."""

from __future__ import annotations

import json
from pathlib import Path

from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.pii import KINDS, evaluate, find_pii, scrub
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI

LABELLED = Path(__file__).parents[2] / "fixtures" / "pii_labelled.jsonl"
TEXT = (
    "Write to maria.gonzalez@example.org or call (415) 555-0132; card 4111 1111 1111 1111; "
    "ship to 742 Evergreen Terrace, Springfield. Regards,\nAnna Kowalski"
)


def test_recall_and_precision_on_the_labelled_set():
    items = [(d["text"], [tuple(p) for p in d["pii"]]) for d in map(json.loads, LABELLED.open())]
    tally = evaluate(items)
    tp = sum(t["tp"] for t in tally.values())
    fn = sum(t["fn"] for t in tally.values())
    fp = sum(t["fp"] for t in tally.values())
    assert tp / (tp + fn) >= 0.85 and tp / (tp + fp) >= 0.95
    for kind in ("EMAIL", "PHONE", "CARD"):  # the kinds that matter most, found by exact means
        assert tally[kind]["tp"] / (tally[kind]["tp"] + tally[kind]["fn"]) >= 0.85, kind
    assert set(tally) == set(KINDS)


def test_scrub_replaces_each_kind_with_a_placeholder():
    out = scrub(TEXT)
    assert out == ("Write to [EMAIL] or call [PHONE]; card [CARD]; ship to [ADDRESS]. Regards,\n[NAME]"), out
    assert scrub("Order 1234 5678 9012 shipped in 2019-2020 for $149.99.") == (
        "Order 1234 5678 9012 shipped in 2019-2020 for $149.99."
    )  # not a valid card (Luhn), not a phone
    assert [f.kind for f in find_pii("call +44 20 7946 0958")] == ["PHONE"]


def test_the_gateway_scrubs_what_it_sends_to_a_remote_model(tmp_path):
    with FakeOpenAI() as server:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        remote = LLMGateway(LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-x"), cache)
        (res,), stats = remote.generate([LLMRequest("k", [{"role": "user", "content": TEXT}])], "s")
        sent = server.requests[-1]["messages"][-1]["content"]
        assert "maria.gonzalez" not in sent and "[EMAIL]" in sent and stats.scrubbed == 1
        assert "4111" not in res.content

        off = LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-x", scrub_pii=False)
        LLMGateway(off, cache).generate([LLMRequest("k", [{"role": "user", "content": TEXT}])], "s")
        assert "maria.gonzalez@example.org" in server.requests[-1]["messages"][-1]["content"]


def test_scrubbing_is_off_by_default_only_for_the_local_model(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert LLMGateway(LLMConfig(model="openai/gpt-4o-mini"), cache).scrubs_pii
    assert not LLMGateway(LLMConfig(), cache).scrubs_pii  # the embedded SmolLM2: nothing leaves
