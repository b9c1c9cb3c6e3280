"""Batch mode through Dagster: an asset whose batches are still running ends its run without a retry,
and ``llm_batch_sensor`` re-runs it (and everything downstream) once the provider says they ended."""

from __future__ import annotations

import dagster as dg
import pytest

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.batch.run import BatchPending
from personahub_dagster.core.llm.results import LLMRequest
from personahub_dagster.definitions import defs
from personahub_dagster.defs.llm.batches import llm_batch_sensor
from personahub_dagster.defs.resources import LakeResource, LLMResource
from tests.support.dagster_cli import finish, materialize, run_env
from tests.support.fake_openai import FakeBatches, FakeOpenAI


def test_the_sensor_reruns_a_stage_when_its_batches_have_ended(tmp_path, make_batch_gateway):
    """A run that stopped waiting (batch_max_wait_s) leaves its record; the sensor requests the asset
    and everything downstream of it for the same partition once the provider says the batches ended."""
    batches = FakeBatches()
    batches.hold.set()
    with FakeOpenAI(batches=batches) as server:
        g = make_batch_gateway(server, batch_max_wait_s=0.1)
        g.batch_context = {"asset": "text_personas", "partition_key": "2026-03-01"}
        with pytest.raises(BatchPending):
            g.generate(
                [LLMRequest(f"k{i}", [{"role": "user", "content": f"q {i}"}]) for i in range(4)],
                "text_personas",
            )
        lake = LakeResource(path=str(tmp_path / "lake"))
        llm = LLMResource(model="openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-test-batch")
        repo = defs().get_repository_def()

        def tick():
            with dg.build_sensor_context(  # the lake resource closes its caches on leaving
                instance=dg.DagsterInstance.ephemeral(),
                resources={"lake": lake, "llm": llm},
                repository_def=repo,
            ) as ctx:
                return llm_batch_sensor(ctx)

        assert isinstance(tick(), dg.SkipReason)  # still running at the provider
        batches.hold.clear()
        batches.retrieve("batch_1", server.script)  # the provider moves on
        batches.retrieve("batch_1", server.script)
        [request] = tick()
    assert request.partition_key == "2026-03-01" and request.tags == {"trigger": "llm_batches"}
    selected = {k.to_user_string() for k in request.asset_selection}
    assert {"text_personas", "expanded_personas", "persona_hub", "datasets"} <= selected
    assert "raw_texts" not in selected


def test_an_asset_in_batch_mode_ends_its_run_while_waiting_and_the_next_run_collects(tmp_path):
    """Through Dagster: the first run submits, waits past batch_max_wait_s and fails without retrying
    (its run and pool slot freed), naming the batch; the next run collects and writes the personas."""
    day = "2026-11-02"
    lake = Lake(tmp_path / "lake")
    rows = [
        {"text_id": f"t-{i:020x}", "partition": day, "source_uri": f"doc:{i}", "doc_id": str(i),
         "text": f"A field guide to the birds of the northern marshes, chapter {i}.", "n_chars": 60,
         "ingested_at": now_utc()}
        for i in range(4)
    ]  # fmt: skip
    lake.write("source_texts", rows_frame("source_texts", rows), producer="raw_texts", partition=day)
    config = {"ops": {"text_personas": {"config": {"llm_mode": "batch", "perspectives": ["read"]}}}}

    def persona(_n: int, _body: dict) -> tuple[str, str]:
        return "ok", "A retired ornithologist who leads dawn bird walks for schoolchildren."

    batches = FakeBatches()
    batches.hold.set()
    with FakeOpenAI(script=persona, batches=batches) as server:
        env = run_env(
            tmp_path, server.base_url, PERSONAHUB_BATCH_POLL_S="0.05", PERSONAHUB_BATCH_MAX_WAIT_S="1"
        )
        first = materialize("text_personas", day, env, config)
        out, _ = first.communicate(timeout=300)
        assert first.returncode != 0 and "batch_1 still running" in out
        assert "STEP_UP_FOR_RETRY" not in out  # not retried by the RetryPolicy: the sensor completes it
        batches.hold.clear()
        finish(materialize("text_personas", day, env, config))
    assert server.requests == [] and len(batches.batches) == 1 and len(batches.submitted) == 4
    assert lake.read("personas", "partition = ?", [day]).height == 4
