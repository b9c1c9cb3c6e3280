"""The ``lineage`` job: one id in the launchpad's config, the whole chain back to the source text in
the run (the browser test drives the same job through the UI: tests/e2e/test_ui.py)."""

from __future__ import annotations

import dagster as dg
import pytest

from personahub_dagster.defs.lake.lineage import lineage
from personahub_dagster.defs.resources import LakeResource


def trace(lake_uri: str, entity_id: str, instance=None, **config) -> dg.ExecuteInProcessResult:
    return lineage.execute_in_process(
        run_config={"ops": {"trace_lineage": {"config": {"id": entity_id, **config}}}},
        resources={"lake": LakeResource(path=lake_uri)},
        instance=instance,
        raise_on_error=False,
    )


def output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return output.step_output_data.metadata


def test_a_generated_rows_chain_is_the_runs_markdown_from_row_to_source_text(chain_lake):
    lake, ids = chain_lake
    instance = dg.DagsterInstance.ephemeral()
    result = trace(lake.uri, ids["g"], instance)
    assert result.success
    meta = output_metadata(result)
    chain = meta["lineage"].value
    order = [ids[k] for k in ("g", "p2", "p1", "p0", "text")]
    positions = [chain.index(i) for i in order]
    assert positions == sorted(positions)  # row → persona → parents → source text, in that order
    assert "A father who works night shifts." in chain and "Nurses on night shifts" in chain
    assert meta["steps"].value == 5 and meta["source_text_id"].value == ids["text"]
    logged = [e.user_message for e in instance.all_logs(result.run_id) if not e.is_dagster_event]
    assert [i for i in order if any(i in line for line in logged)] == order  # a log line per step too


def test_a_persona_or_text_id_works_and_a_wrong_id_fails_saying_why(chain_lake):
    lake, ids = chain_lake
    assert output_metadata(trace(lake.uri, ids["p1"]))["steps"].value == 3
    assert output_metadata(trace(lake.uri, ids["text"]))["steps"].value == 1
    result = trace(lake.uri, "g-" + "0" * 20)
    assert not result.success
    [failure] = [e for e in result.all_node_events if e.event_type_value == "STEP_FAILURE"]
    assert "no generated row" in failure.step_failure_data.user_failure_data.description


@pytest.mark.parametrize("as_of", ["personas=0", "2000-01-01T00:00:00Z"])
def test_as_of_reads_the_lake_as_it_was(chain_lake, as_of):
    lake, ids = chain_lake
    result = trace(lake.uri, ids["g"], as_of=as_of)
    assert not result.success  # the personas table's first version was empty, and in 2000 no lake
