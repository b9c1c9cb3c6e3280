"""Fixtures shared across test modules: real servers (S3, Postgres), a fake provider, a gateway over
it, a tiny hand-made lake with one lineage chain, and the fixture files. Test modules never import
each other; what more than one of them needs is here (or in ``tests/support``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import Postgres, RayHead, SeaweedS3

FIXTURES = Path(__file__).parent / "fixtures"

# Every asset the code location serves with the bundled registry.
SYNTHESIS_ASSETS = frozenset(
    {"math_problems", "logical_reasoning_problems", "instructions", "knowledge_texts", "game_npcs", "tools"}
)
PIPELINE_ASSETS = frozenset(
    {
        "raw_texts",
        "text_personas",
        "expanded_personas",
        "persona_hub",
        "persona_attributes",
        "hub_composition",
        "verifiable_instructions",
        "conversations",
        "preference_pairs",
        "math_checks",
        "datasets",
        "contamination_checks",
        "persona_fidelity",
        "diversity_bands",
        "report",
        *SYNTHESIS_ASSETS,
    }
)


@pytest.fixture(scope="session")
def pipeline_assets() -> frozenset[str]:
    return PIPELINE_ASSETS


@pytest.fixture(scope="session")
def synthesis_assets() -> frozenset[str]:
    return SYNTHESIS_ASSETS


@pytest.fixture(scope="session")
def smollm2_outputs() -> list[dict]:
    """Raw answers of the packaged SmolLM2 model, labelled by stage (``fixtures/smollm2_outputs.jsonl``)."""
    return [json.loads(line) for line in (FIXTURES / "smollm2_outputs.jsonl").open()]


@pytest.fixture
def fake_provider() -> Iterator[Callable[..., FakeOpenAI]]:
    """Start a fake OpenAI-compatible provider (``tests/support/fake_openai.py``: scripted answers,
    faults, rate limits, a batch API) on 127.0.0.1; every one started is stopped after the test."""
    started: list[FakeOpenAI] = []

    def start(*args, **kwargs) -> FakeOpenAI:
        server = FakeOpenAI(*args, **kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def make_gateway(tmp_path) -> Callable[..., LLMGateway]:
    """A gateway to a fake provider with a response cache of the test's own; ``overrides`` set any
    :class:`LLMConfig` field (retries back off in milliseconds)."""

    def make(server: FakeOpenAI, **overrides) -> LLMGateway:
        cfg = {
            "model": "openai/fake",
            "api_base": server.base_url,
            "api_key": "sk-x",
            "backoff_initial_s": 0.01,
            **overrides,
        }
        cache = ResponseCache(tmp_path / "cache.sqlite")
        return LLMGateway(LLMConfig(**cfg), cache, Lake(tmp_path / "lake").files)  # batch records there

    return make


# A batch-mode gateway to the fake provider's batch API: priced as gpt-4o-mini, polling fast.
BATCH_MODE = {
    "model": "openai/gpt-4o-mini",
    "api_key": "sk-test-batch",
    "mode": "batch",
    "batch_poll_s": 0.01,
    "timeout_s": 10.0,
    "backoff_max_s": 0.02,
}


@pytest.fixture
def make_batch_gateway(make_gateway) -> Callable[..., LLMGateway]:
    """:func:`make_gateway` in batch mode (:data:`BATCH_MODE`, any field overridable)."""
    return lambda server, **overrides: make_gateway(server, **{**BATCH_MODE, **overrides})


def build_chain_lake(root: Path, partition: str = "p") -> tuple[Lake, dict[str, str]]:
    """A hand-made lake: text → persona (hop 0) → hop 1 → hop 2 → generated row."""
    lake = Lake(root)
    ts = now_utc()
    text = "Nurses on night shifts care for children with asthma in the city hospital."
    tid = content_id("text", text)
    lake.write(
        "source_texts",
        rows_frame(
            "source_texts",
            [
                {
                    "text_id": tid,
                    "partition": partition,
                    "source_uri": "s.jsonl#L1",
                    "doc_id": "d1",
                    "text": text,
                    "n_chars": len(text),
                    "ingested_at": ts,
                }
            ],
        ),
        producer="test",
        partition=partition,
    )
    p0 = content_id("persona", "text", tid, "read", "A pediatric nurse.")
    p1 = content_id("persona", "relation", p0, "patient", "A child with asthma.")
    p2 = content_id("persona", "relation", p1, "family member", "A father who works night shifts.")
    common = {"source_text_id": tid, "created_at": ts, "partition": partition}
    personas = [
        {"persona_id": p0, "persona": "A pediatric nurse.", "method": "text", "perspective": "read",
         "hop": 0},
        {"persona_id": p1, "persona": "A child with asthma.", "method": "relation", "relation": "patient",
         "parent_persona_id": p0, "hop": 1},
        {"persona_id": p2, "persona": "A father who works night shifts.", "method": "relation",
         "relation": "family member", "parent_persona_id": p1, "hop": 2},
    ]  # fmt: skip
    frame = rows_frame("personas", [{**p, **common} for p in personas])
    lake.write("personas", frame, producer="test", partition=partition)
    gid = content_id("generation", "math_problem", "zero_shot", p2, "h")
    row = {"row_id": gid, "data_type": "math_problem", "prompting_mode": "zero_shot", "persona_id": p2,
           "output": "Math problem: 3 shifts of 12 hours…", **common}  # fmt: skip
    lake.write("generations", rows_frame("generations", [row]), producer="test", partition=partition)
    return lake, {"text": tid, "p0": p0, "p1": p1, "p2": p2, "g": gid}


@pytest.fixture
def chain_lake(tmp_path) -> tuple[Lake, dict[str, str]]:
    """A tiny lake holding one lineage chain (:func:`build_chain_lake`) and the ids along it."""
    return build_chain_lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def make_chain_lake() -> Callable[..., tuple[Lake, dict[str, str]]]:
    """:func:`build_chain_lake` for fixtures of a wider scope (a served lake)."""
    return build_chain_lake


@pytest.fixture(scope="session")
def s3_server():
    """One real S3-compatible server (SeaweedFS) for the session, on 127.0.0.1."""
    with SeaweedS3() as server:
        yield server


@dataclass(frozen=True)
class S3Lake:
    server: SeaweedS3
    url: str  # s3://lake/t-<random>: a lake of the test's own

    @property
    def env(self) -> dict[str, str]:
        return self.server.env


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Lake:
    """The server's AWS_* settings in this process's environment, and a fresh lake URL for the test."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return S3Lake(s3_server, s3_server.url(f"t-{uuid.uuid4().hex[:10]}"))


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path) -> str:
    """A fresh lake location, once a folder and once a prefix on the test S3 server."""
    if request.param == "local":
        return str(tmp_path / "lake")
    return request.getfixturevalue("s3").url


@pytest.fixture(scope="session")
def pg_server():
    """One real Postgres cluster for the session (Debian's package), on 127.0.0.1."""
    with Postgres() as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray cluster for the session (``ray start --head``), on 127.0.0.1: its address, with
    this process connected to it."""
    import ray

    with RayHead(cpus=2) as head:
        ray.init(address=head.address, log_to_driver=False)
        try:
            yield head.address
        finally:
            ray.shutdown()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's Postgres: its ``postgresql://`` URL."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:10]}")
