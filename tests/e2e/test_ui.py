"""`make ui`'s server for real: `dagster dev` on 127.0.0.1 with workspace.yaml serves every asset, the
schedule and the sensor; a headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
opens the asset graph, launches a run for the day's partition with the UI's own buttons and
waits for it to succeed, on the real local models. Screenshots go to test-artifacts/."""

from __future__ import annotations

import datetime
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

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.inbox import register

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


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
    shutil.copy(ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")  # what `make ui` uses
    lake = tmp_path_factory.mktemp("ui_lake")
    inbox = tmp_path_factory.mktemp("inbox")
    # today's partition holds two texts of the sample corpus: the launched run is the real pipeline,
    # sized to finish in minutes on the embedded model
    corpus = tmp_path_factory.mktemp("corpus") / "two_texts.jsonl"
    corpus.write_text("".join((ROOT / "assets/corpus/sample.jsonl").read_text().splitlines(True)[:2]))
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    register(corpus, inbox, day)
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSONAHUB_LAKE": str(lake),
        "PERSONAHUB_INBOX": str(inbox),
        "PERSONAHUB_TIMEZONE": "UTC",
    }
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
        yield url, Lake(lake), day
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_asset_graph_schedule_and_sensor_are_served(dagster_dev, pipeline_assets, synthesis_assets):
    url, *_ = dagster_dev
    data = graphql(url, "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }")
    nodes = {n["assetKey"]["path"][0]: n for n in data["assetNodes"]}
    assert set(nodes) == pipeline_assets
    for name in synthesis_assets:
        assert [k["path"][0] for k in nodes[name]["dependencyKeys"]] == ["persona_hub"]
        assert nodes[name]["groupName"] == "synthesis"
    assert {k["path"][0] for k in nodes["datasets"]["dependencyKeys"]} == synthesis_assets | {
        "math_checks",
        "contamination_checks",
        *POST_TRAINING,
    }
    assert [k["path"][0] for k in nodes["text_personas"]["dependencyKeys"]] == ["raw_texts"]
    repo = '{repositoryLocationName: "personahub_dagster", repositoryName: "__repository__"}'
    automation = graphql(
        url,
        f"{{ schedulesOrError(repositorySelector: {repo}) {{ ... on Schedules {{ results {{ name "
        "cronSchedule executionTimezone scheduleState { status } } } }"
        f" sensorsOrError(repositorySelector: {repo}) {{ ... on Sensors {{ results {{ name "
        "sensorState { status } } } } }",
    )
    schedules = {s["name"]: s for s in automation["schedulesOrError"]["results"]}
    sensors = {s["name"]: s for s in automation["sensorsOrError"]["results"]}
    assert set(schedules) == {"nightly_hub_growth", "weekly_lake_maintenance"}
    assert schedules["nightly_hub_growth"]["cronSchedule"] == "0 2 * * *"
    assert schedules["weekly_lake_maintenance"]["cronSchedule"] == "0 3 * * 0"
    for schedule in schedules.values():
        assert schedule["executionTimezone"] == "UTC" and schedule["scheduleState"]["status"] == "STOPPED"
    assert set(sensors) == {"inbox_sensor", "llm_batch_sensor"}
    assert all(sensor["sensorState"]["status"] == "STOPPED" for sensor in sensors.values())


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


def wait_for_run(url: str, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        query = '{ runOrError(runId: "' + run_id + '") { ... on Run { status } } }'
        status = graphql(url, query)["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    return "TIMEOUT"


def test_a_materialization_launched_through_the_api_succeeds(dagster_dev):
    url, lake, day = dagster_dev
    params = {
        "selector": {
            "repositoryLocationName": "personahub_dagster",
            "repositoryName": "__repository__",
            "jobName": "persona_hub_pipeline",
            "assetSelection": [{"path": ["raw_texts"]}],
        },
        "runConfigData": {"ops": {"raw_texts": {"config": {"max_texts": 1}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert wait_for_run(url, launched["run"]["runId"], 180) == "SUCCESS"
    assert lake.read("source_texts", "partition = ?", [day]).height == 1


GROUPS = ("ingest", "personas", "hub", "synthesis", "post_training", "datasets", "evaluation")
POST_TRAINING = ("verifiable_instructions", "conversations", "preference_pairs")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(
            "headless Chromium is missing: run `make browser` (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = chromium
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.implicitly_wait(0)
    ARTIFACTS.mkdir(exist_ok=True)
    yield drv
    drv.quit()


def _wait_for(drv, condition, timeout_s: float = 60, what: str = "the page"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    drv.save_screenshot(str(ARTIFACTS / "browser-timeout.png"))
    raise AssertionError(f"timed out waiting for {what}")


def _click_button(drv, label: str, exact: bool = False):
    from selenium.webdriver.common.by import By

    def find():
        for b in drv.find_elements(By.TAG_NAME, "button"):
            text = b.text.strip()
            if (text == label if exact else text.startswith(label)) and b.is_enabled():
                return b
        return None

    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    def click():
        try:
            _wait_for(drv, find, what=f"the {label!r} button").click()
            return True
        except (ElementClickInterceptedException, StaleElementReferenceException):
            _dismiss_welcome(drv)  # the UI's welcome dialog can pop up over the page at any time
            return False

    _wait_for(drv, click, what=f"a click on {label!r}")


def _run_ids(url: str, partition: str | None = None) -> list[str]:
    runs = graphql(url, "{ runsOrError { ... on Runs { results { runId tags { key value } } } } }")
    return [
        r["runId"]
        for r in runs["runsOrError"]["results"]
        if partition is None or {"key": "dagster/partition", "value": partition} in r["tags"]
    ]


def _body(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.TAG_NAME, "body").text


def _dismiss_welcome(drv):
    """Close the UI's one-time "Join the Dagster community" dialog if it is up."""
    drv.execute_script(
        "if (document.body.innerText.includes('Join the Dagster community')) {"
        "  for (const b of document.querySelectorAll('button')) {"
        "    if (b.textContent.trim() === 'Skip') b.click(); } }"
    )


def test_the_ui_in_a_browser_shows_the_graph_and_launches_a_run(dagster_dev, browser, pipeline_assets):
    """What a person does in `make ui`: open the asset graph, see every asset, materialize the day's
    input with the UI's own buttons, and watch the run succeed."""

    url, lake, day = dagster_dev
    seen = set()
    for group in GROUPS:
        browser.get(f"{url}/locations/__repository__@personahub_dagster/asset-groups/{group}")
        _wait_for(browser, lambda: "Partitions" in _body(browser), what=f"the {group} graph")
        _dismiss_welcome(browser)
        seen |= {a for a in pipeline_assets if a in _body(browser)}
        browser.save_screenshot(str(ARTIFACTS / f"graph-{group}.png"))
    assert seen == pipeline_assets

    # launch with the UI's own buttons: the ingest group's "Materialize…" for the newest partition
    # (today, where the texts are); the whole pipeline on the real models is tests/test_e2e.py
    browser.get(f"{url}/locations/__repository__@personahub_dagster/asset-groups/ingest")
    _wait_for(browser, lambda: "Partitions" in _body(browser), what="the ingest graph")
    _dismiss_welcome(browser)
    before = set(_run_ids(url))
    _click_button(browser, "Materialize")
    _click_button(browser, "Latest", exact=True)
    browser.save_screenshot(str(ARTIFACTS / "launch-dialog.png"))
    _click_button(browser, "Launch 1 run")

    run_id = _wait_for(browser, lambda: next(iter(set(_run_ids(url, day)) - before), None), what="the run")
    browser.get(f"{url}/runs/{run_id}")
    status = wait_for_run(url, run_id, 300)
    browser.save_screenshot(str(ARTIFACTS / "run.png"))
    assert status == "SUCCESS"
    assert lake.read("source_texts", "partition = ?", [day]).height == 2


def test_the_lineage_job_in_a_browser_traces_a_row_to_its_source_text(dagster_dev, browser, make_chain_lake):
    """A user holding a generated row's id: the ``lineage`` job's launchpad, the id in its config,
    "Launch Run", and the run shows the chain — row → personas → source text — as markdown."""
    url, lake, _day = dagster_dev
    _, ids = make_chain_lake(Path(lake.uri), "2026-01-15")  # a day of its own in the served lake
    browser.get(f"{url}/locations/__repository__@personahub_dagster/jobs/lineage/playground")
    editor = "return !!document.querySelector('.CodeMirror')"
    _wait_for(browser, lambda: browser.execute_script(editor), what="the launchpad's config editor")
    _dismiss_welcome(browser)
    config = f"ops:\n  trace_lineage:\n    config:\n      id: {ids['g']}\n"
    browser.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", config)
    before = set(_run_ids(url))
    _click_button(browser, "Launch Run")
    run_id = _wait_for(browser, lambda: next(iter(set(_run_ids(url)) - before), None), what="the run")
    assert wait_for_run(url, run_id, 120) == "SUCCESS"

    from selenium.webdriver.common.by import By

    browser.get(f"{url}/runs/{run_id}")
    show = "//*[normalize-space(text())='[Show Markdown]']"
    _wait_for(browser, lambda: browser.find_elements(By.XPATH, show), what="the run's lineage metadata")
    _dismiss_welcome(browser)
    browser.find_elements(By.XPATH, show)[0].click()
    _wait_for(browser, lambda: "persona (hop 2)" in _body(browser), what="the lineage markdown")
    browser.save_screenshot(str(ARTIFACTS / "lineage.png"))
    shown = _body(browser)
    chain = shown[shown.index("generation " + ids["g"]) :]
    order = [ids[k] for k in ("g", "p2", "p1", "p0", "text")]
    assert [chain.index(i) for i in order] == sorted(chain.index(i) for i in order)
    assert "A father who works night shifts." in chain and "Nurses on night shifts" in chain
