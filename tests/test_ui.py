"""`make ui`'s server for real: `dagster dev` on 127.0.0.1 with workspace.yaml shows every asset, and a
materialization launched through its GraphQL API (what the UI's buttons call) succeeds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from personahub_dagster.core.lake import Lake

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
SYNTHESIS = {
    "math_problems",
    "logical_reasoning_problems",
    "instructions",
    "knowledge_texts",
    "game_npcs",
    "tools",
}
ASSETS = {
    "raw_texts",
    "text_personas",
    "expanded_personas",
    "persona_hub",
    "math_checks",
    "datasets",
    *SYNTHESIS,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        payload = json.loads(resp.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("")
    lake = tmp_path_factory.mktemp("ui_lake")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONAHUB_LAKE": str(lake)}
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    proc = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                data = graphql(url, "{ assetNodes { assetKey { path } } }")
                if data["assetNodes"]:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "dagster dev exited early"
            assert time.monotonic() < deadline, "dagster dev did not come up in 120 s"
            time.sleep(1)
        yield url, Lake(lake)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_asset_graph_is_served(dagster_dev):
    url, _ = dagster_dev
    data = graphql(url, "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }")
    nodes = {n["assetKey"]["path"][0]: n for n in data["assetNodes"]}
    assert set(nodes) == ASSETS
    for name in SYNTHESIS:
        assert [k["path"][0] for k in nodes[name]["dependencyKeys"]] == ["persona_hub"]
        assert nodes[name]["groupName"] == "synthesis"
    assert {k["path"][0] for k in nodes["datasets"]["dependencyKeys"]} == SYNTHESIS | {"math_checks"}
    assert [k["path"][0] for k in nodes["text_personas"]["dependencyKeys"]] == ["raw_texts"]


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def test_a_materialization_launched_through_the_server_succeeds(dagster_dev):
    url, lake = dagster_dev
    params = {
        "selector": {
            "repositoryLocationName": "personahub_dagster",
            "repositoryName": "__repository__",
            "jobName": "persona_hub_pipeline",
            "assetSelection": [{"path": ["raw_texts"]}],
        },
        "runConfigData": {"ops": {"raw_texts": {"config": {"max_texts": 5}}}},
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.monotonic() + 180, None
    while time.monotonic() < deadline:
        query = '{ runOrError(runId: "' + run_id + '") { ... on Run { status } } }'
        status = graphql(url, query)["runOrError"]
        if status["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == {"status": "SUCCESS"}
    assert lake.counts()["source_texts"] == 5
