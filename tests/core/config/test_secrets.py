"""Every credential the process holds is taken out of text that leaves it — whichever setting, library
or environment variable it came from."""

from __future__ import annotations

import logging

from personahub_dagster.core.config.secrets import RedactingFilter, redact, register, secret_values
from personahub_dagster.core.llm.batch.provider import BatchError
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest
from tests.support.fake_openai import FakeOpenAI

PROVIDER_KEY = "sk-only-in-the-environment-4c1d9e"
PG_PASSWORD = "pg-pass-77aa01bb"
S3_SECRET = "s3-secret-9f9f2e2e"


def test_the_environments_credentials_are_found_and_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("PERSONAHUB_CACHE", f"postgresql://team:{PG_PASSWORD}@db.internal:5432/cache")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEID")  # an id, not a secret
    found = secret_values()
    assert {PROVIDER_KEY, S3_SECRET, PG_PASSWORD} <= set(found) and "AKIAEXAMPLEID" not in found
    text = f"401 {PROVIDER_KEY} while reading s3 with {S3_SECRET}; dsn postgresql://team:{PG_PASSWORD}@db"
    clean = redact(text)
    assert PROVIDER_KEY not in clean and S3_SECRET not in clean and PG_PASSWORD not in clean
    assert clean.count("***") == 3 and "AKIAEXAMPLEID" not in text  # nothing else was touched


def test_unknown_bearer_tokens_and_url_passwords_go_too():
    clean = redact("Authorization: Bearer abcdefgh12345678 to https://u:not-known-pw@example.com/x")
    assert "abcdefgh12345678" not in clean and "not-known-pw" not in clean
    assert "https://u:***@example.com/x" in clean


def test_registered_values_and_log_records_are_redacted():
    register("resource-given-key-123456")
    record = logging.LogRecord(
        "LiteLLM", logging.ERROR, __file__, 1, "bad key %s", ("resource-given-key-123456",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "bad key ***"


def test_a_batch_error_quoting_the_key_is_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    assert PROVIDER_KEY not in str(BatchError(f"POST /batches: HTTP 401: Incorrect API key {PROVIDER_KEY}"))


def test_a_key_only_in_openai_api_key_echoed_by_the_provider_is_stored_nowhere(tmp_path, monkeypatch):
    """The key reaches the provider from the environment alone (no setting names it); the provider
    quotes it back in its 401: neither the result, the journal nor the cache file holds it."""
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    with FakeOpenAI(lambda n, body: ("echo_key", None)) as server:
        cfg = LLMConfig(model="openai/fake", api_base=server.base_url, max_retries=0)
        gw = LLMGateway(cfg, ResponseCache(tmp_path / "cache.sqlite"))
        [result], _ = gw.generate([LLMRequest("k", [{"role": "user", "content": "hi"}])], "s")
    assert server.headers[0]["authorization"] == f"Bearer {PROVIDER_KEY}"  # it was used
    assert "Incorrect API key provided" in result.error and PROVIDER_KEY not in result.error
    journal = gw.cache.calls_frame()
    assert journal["error"].str.contains("***", literal=True).all()
    assert not any(PROVIDER_KEY.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
