"""The deployment a team runs, on one machine: every server real, started here on 127.0.0.1.

Postgres (Dagster's instance storage *and* the shared response cache), the S3 server (the lake),
llama-cpp-python's OpenAI-compatible server (the model), ``dagster-daemon`` with the queued run
coordinator, pools and run monitoring from ``deploy/dagster.yaml``, and ``dagster-webserver`` for the
GraphQL API. Two days × two shards are submitted through GraphQL as four independent runs of the
``hub_growth`` job; then a run worker is SIGKILLed mid-stage and the run is re-executed from failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import polars as pl
import pytest

from personahub_dagster.core.llm.cache.backends import open_cache
from personahub_dagster.core.llm.cache.ledger import Hold
from tests.support.servers import LlamaServer, free_ports

pytestmark = pytest.mark.scale

ROOT = Path(__file__).resolve().parents[2]
DAYS = ["2026-01-01", "2026-01-02"]
SHARDS = ["0", "1"]
JOB = "hub_growth"


def run_config(max_texts: int, hops: int) -> dict:
    return {
        "ops": {
            "raw_texts": {"config": {"max_texts": max_texts}},
            "text_personas": {"config": {"perspectives": ["read", "write"]}},
            "expanded_personas": {"config": {"hops": hops}},
        },
        # one process per run: the run worker is the process that runs the steps
        "execution": {"config": {"in_process": {}}},
    }


class Deployment:
    """The daemon and the webserver over one Postgres-backed instance, and handles to inspect it."""

    def __init__(self, home: Path, env: dict[str, str], llm: LlamaServer):
        self.home, self.env, self.llm = home, env, llm
        self.procs: list[subprocess.Popen] = []
        self.logfiles: list = []
        self.port = free_ports(1)[0]

    def start(self) -> None:
        workspace = str(ROOT / "workspace.yaml")
        bin_dir = Path(sys.executable).parent
        for name, args in (
            ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]),
            ("webserver", [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                           "-w", workspace]),
        ):  # fmt: skip
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            self.logfiles.append(log)
            self.procs.append(
                subprocess.Popen(
                    args,
                    env=self.env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 240
        while not self._webserver_up():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("dagster did not start:\n" + self.logs())
            time.sleep(1)

    def _webserver_up(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.home.glob("*.log"))
        )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in self.logfiles:
            log.close()

    # -- GraphQL --------------------------------------------------------------------------------
    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def submit(self, day: str, shard: str, config: dict) -> str:
        tags = {
            "dagster/partition": f"{day}|{shard}",
            "dagster/partition/day": day,
            "dagster/partition/shard": shard,
        }
        return self.client().submit_job_execution(JOB, run_config=config, tags=tags)

    def reexecute_from_failure(self, run_id: str) -> str:
        query = """
        mutation($parent: String!) {
          launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: FROM_FAILURE}) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message }
          }
        }"""
        result = self.client()._execute(query, {"parent": run_id})["launchRunReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def status(self, run_id: str) -> str:
        return self.client().get_run_status(run_id).value

    def wait(self, run_ids: list[str], timeout_s: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = {r: self.status(r) for r in run_ids}
            if all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs not finished: {statuses}\n{self.logs()}")
            time.sleep(2)


def _instance(env: dict[str, str]):
    import dagster as dg

    saved = dict(os.environ)
    os.environ.update(env)  # the instance's dagster.yaml reads DAGSTER_PG_* from the environment
    try:
        return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def deployment(pg_server, s3_server):
    home = Path(tempfile.mkdtemp(prefix="deploy-"))
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    inbox = home / "inbox"
    docs = [
        json.loads(line) for line in (ROOT / "assets" / "corpus" / "sample.jsonl").read_text().splitlines()
    ]
    for i, day in enumerate([*DAYS, "2026-01-03"]):
        (inbox / day).mkdir(parents=True)
        chunk = docs[i * 20 : (i + 1) * 20]
        (inbox / day / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chunk))
    pg_server.create_database("dagster")
    cache_url = pg_server.create_database("llm_cache")
    with LlamaServer() as llm:
        env = {
            **os.environ,
            **s3_server.env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_server.port),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
            "PERSONAHUB_LAKE": s3_server.url("scale"),
            "PERSONAHUB_CACHE": cache_url,
            "PERSONAHUB_INBOX": str(inbox),
            "PERSONAHUB_SHARDS": str(len(SHARDS)),
            "PERSONAHUB_START_DATE": DAYS[0],
            "PERSONAHUB_MODEL": f"openai/{llm.model}",
            "PERSONAHUB_API_BASE": llm.base_url,
            "PERSONAHUB_CONCURRENCY": "2",
            "HF_HUB_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONPATH": str(ROOT),
        }
        d = Deployment(home, env, llm)
        try:
            d.start()
            yield d
        finally:
            d.stop()
            shutil.rmtree(home, ignore_errors=True)


def _step_windows(instance, run_ids: list[str], step: str) -> list[tuple[float, float]]:
    from dagster import DagsterEventType

    windows = []
    for run_id in run_ids:
        events = [e for e in instance.all_logs(run_id) if e.step_key == step and e.dagster_event]
        start = [e.timestamp for e in events if e.dagster_event.event_type == DagsterEventType.STEP_START]
        end = [
            e.timestamp
            for e in events
            if e.dagster_event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
        ]
        assert start and end, f"{step} did not run in {run_id}"
        windows.append((min(start), max(end)))
    return sorted(windows)


def test_two_days_of_two_shards_through_the_deployment(deployment, s3_server, tmp_path, monkeypatch):
    for key, value in s3_server.env.items():  # to read the remote lake from here
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    config = run_config(max_texts=4, hops=1)
    runs = [deployment.submit(day, shard, config) for day in DAYS for shard in SHARDS]
    statuses = deployment.wait(runs, timeout_s=900)
    wall = time.monotonic() - started
    print(f"\n4 runs (2 days x 2 shards) through the queued deployment: {wall:.0f} s wall")
    assert set(statuses.values()) == {"SUCCESS"}, f"{statuses}\n{deployment.logs()}"

    instance = _instance(deployment.env)
    # hub growth never ran twice at once: its steps' windows do not overlap
    windows = _step_windows(instance, runs, "persona_hub")
    for (_, end), (start, _) in pairwise(windows):
        assert start >= end, f"persona_hub steps overlapped: {windows}"
    # …while the runs themselves did overlap (the queue let several in at once)
    run_windows = sorted((r.start_time, r.end_time) for r in (instance.get_run_record_by_id(i) for i in runs))
    assert any(b[0] < a[1] for a, b in pairwise(run_windows))

    # the LLM server answered each distinct request once: its log against the shared journal
    cache = open_cache(deployment.env["PERSONAHUB_CACHE"])
    calls = cache.calls_frame()
    served = deployment.llm.completions_served()
    # …once each process learnt the server's schema form (persona_attributes asks with a JSON schema)
    assert served - deployment.llm.schemas_refused() == calls.height > 0
    ok = calls.filter(pl.col("status") == "ok")
    assert ok["request_hash"].n_unique() == ok.height

    # the hub's marks equal those of one in-process run over the same texts, shard after shard,
    # on a local lake with the same (shared) cache: not one request more reaches the server
    from personahub_dagster.core.lake.tables import Lake

    remote = Lake(deployment.env["PERSONAHUB_LAKE"])
    local = _in_process_runs(deployment.env, tmp_path / "lake", config)
    assert deployment.llm.completions_served() == served
    cols = ["persona_id", "partition", "dup_of", "dup_reason"]
    assert (
        local.read("hub")
        .select(cols)
        .sort("persona_id")
        .equals(remote.read("hub").select(cols).sort("persona_id"))
    )
    parts = sorted(remote.read("hub")["partition"].unique().to_list())
    assert parts == [f"{d}.s{s}" for d in DAYS for s in SHARDS]
    # the shards split each day's texts without overlap, and a shard's lineage is the usual chain
    texts = remote.read("source_texts")
    assert texts["text_id"].n_unique() == texts.height > 0
    expanded = remote.read("personas", "hop = 1").sort("persona_id")
    chain = remote.lineage(expanded["persona_id"][0])
    assert [step.kind for step in chain] == ["persona", "persona", "text"]
    source = texts.filter(pl.col("text_id") == chain[-1].id)
    assert source["partition"].to_list() == [expanded["partition"][0]]  # the persona's own shard

    # nothing was written to a local lake: the lake is remote, the cache is Postgres
    home = deployment.home
    assert not (home / "lake").exists()
    assert not list(home.rglob("*.sqlite")) and not list(home.rglob("*.parquet"))


def _in_process_runs(env: dict[str, str], lake_dir: Path, config: dict):
    """The same partitions, in order, in this process, on a local lake — the reference marks."""
    code = f"""
import dagster as dg
from personahub_dagster.definitions import defs
job = defs().resolve_job_def({JOB!r})
for day in {DAYS!r}:
    for shard in {SHARDS!r}:
        key = dg.MultiPartitionKey({{"day": day, "shard": shard}})
        r = job.execute_in_process(run_config={config!r}, partition_key=key,
                                   instance=dg.DagsterInstance.ephemeral())
        assert r.success
"""
    local_env = {**env, "PERSONAHUB_LAKE": str(lake_dir)}
    local_env.pop("DAGSTER_HOME")
    subprocess.run([sys.executable, "-c", code], env=local_env, check=True, cwd=lake_dir.parent)
    from personahub_dagster.core.lake.tables import Lake

    return Lake(lake_dir)


def test_a_killed_run_worker_is_failed_by_monitoring_and_resumes_without_paying_twice(deployment):
    from dagster import DagsterEventType

    cache = open_cache(deployment.env["PERSONAHUB_CACHE"])
    run_id = deployment.submit("2026-01-03", "0", run_config(max_texts=12, hops=2))
    instance = _instance(deployment.env)

    # wait until the run is mid-stage: its worker has stored some answers and is asking for more
    deadline = time.monotonic() + 300
    pid = None
    while True:
        calls = cache.calls_frame().filter(pl.col("run_id") == run_id)
        if pid is None:
            for e in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
                if (e.dagster_event.message or "").startswith("Started process for run"):
                    pid = int(e.dagster_event.engine_event_data.metadata["pid"].value)
        if pid is not None and calls.height >= 3:
            break
        assert time.monotonic() < deadline, deployment.logs()
        time.sleep(0.2)
    # the machine of the run worker is lost: the worker and the code server that started it, at once
    # (a worker that dies alone is noticed by its code server; here only run monitoring can tell)
    code_server = _parent(pid)
    os.kill(code_server, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    answered = set(cache.calls_frame().filter(pl.col("status") == "ok")["request_hash"])

    # run monitoring notices the worker is gone and fails the run (it would stay STARTED otherwise)
    assert deployment.wait([run_id], timeout_s=180)[run_id] == "FAILURE"
    messages = [e.message or "" for e in instance.all_logs(run_id)]
    assert any(f"FAILED: 'run worker process {pid} is gone'" in m for m in messages), messages[-5:]

    served_before = deployment.llm.completions_served() - deployment.llm.schemas_refused()
    retry = deployment.reexecute_from_failure(run_id)
    assert deployment.wait([retry], timeout_s=600)[retry] == "SUCCESS", deployment.logs()

    after = cache.calls_frame().filter(pl.col("created_at").dt.epoch("s") > killed_at)
    assert after.height > 0  # the re-execution asked for what had not been answered…
    assert not set(after["request_hash"]) & answered  # …and nothing that had
    assert (
        deployment.llm.completions_served() - deployment.llm.schemas_refused() == served_before + after.height
    )


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_stage_runs_against_the_llama_cpp_server_through_the_direct_transport(deployment, tmp_path):
    """Text-to-Persona on the real server, as a team's vLLM or llama.cpp server is reached: the gateway
    picks its direct HTTP transport (not litellm) for an OpenAI-compatible base URL."""
    from personahub_dagster.core.llm.cache.sqlite import ResponseCache
    from personahub_dagster.core.llm.config import LLMConfig
    from personahub_dagster.core.llm.gateway import LLMGateway
    from personahub_dagster.core.llm.transports import OpenAIHTTPTransport
    from personahub_dagster.core.stages.ingest import Document, to_source_texts
    from personahub_dagster.core.stages.personas import text_to_persona
    from personahub_dagster.core.stages.prompts import load_prompt

    llm = deployment.llm
    gateway = LLMGateway(
        LLMConfig(model=f"openai/{llm.model}", api_base=llm.base_url, concurrency=2),
        ResponseCache(tmp_path / "cache.sqlite"),
    )
    assert isinstance(gateway.transport, OpenAIHTTPTransport)
    docs = [json.loads(line) for line in (ROOT / "assets/corpus/sample.jsonl").read_text().splitlines()[-2:]]
    texts, _ = to_source_texts([Document(f"doc:{d['doc_id']}", d["doc_id"], d["text"]) for d in docs], "d")
    before = llm.completions_served()
    out = text_to_persona(
        texts, gateway, load_prompt("text_to_persona"), perspectives=["read"], partition="d"
    )
    assert llm.completions_served() == before + 2
    assert out.rows.height + out.rejects.height == 2 and out.rows.height >= 1

    # a JSON schema the server refuses in OpenAI's form (llama-cpp-python takes json_object + schema):
    # refused once, then every request sent in the form it takes, and the answers fit the schema
    from personahub_dagster.core.stages.attributes import extract_attributes

    before = llm.completions_served()
    described = extract_attributes(out.rows, gateway, load_prompt("persona_attributes"), partition="d")
    refused = llm.completions_served() - before - out.rows.height
    assert 1 <= refused <= 2  # the first request (two, if both were in flight at once)
    assert llm.schemas_refused() >= refused
    assert described.rows.height == out.rows.height and described.rejects.is_empty()
    assert (
        described.rows["domain"]
        .is_in(load_prompt("persona_attributes").extras["domains"] + ["unknown"])
        .all()
    )
    assert out.stats.calls == 2 and out.stats.prompt_tokens > 0


# -- the team fault test ---------------------------------------------------------------------------
NIGHT = "2026-01-01"
PLANTED_KEY = "sk-team-planted-8d2f4c71e0a9"  # given only as OPENAI_API_KEY: no setting names it
PLANTED_PG_PASSWORD = "pg-planted-3e5a7c19"
RPM = 600  # the key's limit at the provider: 10 requests a second, for both shards together
CAP_USD = 0.00045  # the night's budget: two thirds of what the two shards' texts cost (about 0.00067)


def faulty_provider(n: int, body: dict) -> tuple[str, object]:
    """A provider on a bad night: 429s with Retry-After, 500s and 503s, stalls, dropped connections,
    200s that are not JSON, and a gateway that quotes the caller's key back in a 401; else a persona."""
    if n % 10 == 5:
        return "echo_key", None
    roll = random.Random(n).random()
    for below, action in (
        (0.05, ("retry_after", 0.3)), (0.08, ("status", 500)), (0.11, ("status", 503)),
        (0.13, ("hang", 1.5)), (0.16, ("drop", None)), (0.19, ("malformed", None)),
    ):  # fmt: skip
        if roll < below:
            return action
    h = hashlib.sha256(str(body["messages"]).encode()).hexdigest()
    return "ok", f"A night-shift {['nurse', 'welder', 'pilot', 'baker'][int(h[0], 16) % 4]} called {h[:8]}."


def _secrets_in(blob: bytes, name: str, planted: list[str]) -> list[str]:
    """Which planted secrets ``blob`` holds: Parquet files cell by cell (they are compressed), any
    other file as bytes."""
    found = [s for s in planted if s.encode() in blob]
    if name.endswith(".parquet"):
        import io

        table = pl.read_parquet(io.BytesIO(blob))
        for column, dtype in table.schema.items():
            if dtype == pl.Utf8:
                found += [s for s in planted if table[column].str.contains(s, literal=True).any()]
    return found


def test_a_team_night_of_faults_keeps_one_budget_one_rate_and_no_secret(
    pg_server, s3_server, tmp_path, monkeypatch
):
    """Two shard processes of one night — the Postgres instance and cache, the S3 lake, a provider
    that fails in every way — with one budget and one rate limit; shard 1 is SIGKILLed mid-stage and
    run again. Every input ends a row or a reject, each answer is stored once and never asked again
    once received, the night spends no more than its cap, the key's rate holds, and the planted
    secrets are nowhere."""
    from personahub_dagster.core.evaluation.report import write_report
    from personahub_dagster.core.lake.tables import Lake
    from tests.support.dagster_cli import materialize
    from tests.support.fake_openai import FakeOpenAI, ProviderLimits
    from tests.support.timing import max_in_window

    home = tmp_path / "dagster_home"
    home.mkdir()
    # the deployment's Postgres storage, without its queue and pools: the two shards run at once here
    # (the llm pool would serialize their stages, and a killed run's slot waits for run monitoring)
    storage = (ROOT / "deploy" / "dagster.yaml").read_text().split("# Runs wait in a queue")[0]
    (home / "dagster.yaml").write_text(storage)
    db = f"team_{os.getpid()}"
    pg_server.create_database(db)
    cache_db = pg_server.create_database(f"{db}_cache")
    cache_url = cache_db.replace("postgres@", f"postgres:{PLANTED_PG_PASSWORD}@")  # trust auth: unused
    inbox = tmp_path / "inbox" / NIGHT
    inbox.mkdir(parents=True)
    docs = (ROOT / "assets" / "corpus" / "sample.jsonl").read_text().splitlines()[:24]
    (inbox / "docs.jsonl").write_text("\n".join(docs) + "\n")
    lake_url = s3_server.url(f"team-{os.getpid()}")
    config = {
        "ops": {
            "raw_texts": {"config": {"max_texts": 100}},
            "text_personas": {"config": {"perspectives": ["read", "write"]}},
        },
        "execution": {"config": {"in_process": {}}},
    }
    with FakeOpenAI(faulty_provider, limits=ProviderLimits(rpm=RPM)) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONAHUB_", "OPENAI_"))}
        env.update(
            **s3_server.env,
            DAGSTER_HOME=str(home), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(pg_server.port),
            DAGSTER_PG_USER="postgres", DAGSTER_PG_PASSWORD=PLANTED_PG_PASSWORD, DAGSTER_PG_DB=db,
            OPENAI_API_KEY=PLANTED_KEY, PERSONAHUB_MODEL="openai/gpt-4o-mini",
            PERSONAHUB_API_BASE=server.base_url, PERSONAHUB_LAKE=lake_url, PERSONAHUB_CACHE=cache_url,
            PERSONAHUB_INBOX=str(tmp_path / "inbox"), PERSONAHUB_SHARDS="2", PERSONAHUB_START_DATE=NIGHT,
            PERSONAHUB_CONCURRENCY="4", PERSONAHUB_RPM=str(RPM), PERSONAHUB_MAX_RUN_COST_USD=str(CAP_USD),
            PERSONAHUB_BUDGET_SCOPE=f"night-{NIGHT}", HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True",
            PYTHONPATH=str(ROOT),
        )  # fmt: skip
        instance = _instance(env)  # the instance's schema, once, before two runs race to create it
        select = "raw_texts,text_personas"
        runs = {shard: materialize(select, f"{NIGHT}|{shard}", env, config) for shard in "01"}
        cache = open_cache(cache_db)
        deadline = time.monotonic() + 240
        while True:  # kill shard 1 once its stage has paid for a few answers
            assert time.monotonic() < deadline, "shard 1 never reached its LLM stage"
            assert runs["1"].poll() is None, runs["1"].communicate()[0][-3000:]
            shard_1 = [
                r.run_id
                for r in _instance(env).get_runs()
                if r.tags.get("dagster/partition", "").endswith("|1")
            ]
            ok = cache.calls_frame().filter(pl.col("status") == "ok")
            if shard_1 and ok.filter(pl.col("run_id") == shard_1[0]).height >= 4:
                break
            time.sleep(0.2)
        os.killpg(runs["1"].pid, signal.SIGKILL)
        killed_out = runs["1"].communicate()[0]
        outputs = [_finish(runs["0"]), killed_out]
        outputs.append(_finish(materialize(select, f"{NIGHT}|1", env, config)))

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    lake = Lake(lake_url, cache=cache_db)
    # every input ends a row or a reject, in each shard
    for part in (f"{NIGHT}.s0", f"{NIGHT}.s1"):
        texts = lake.read("source_texts", "partition = ?", [part]).height
        rows = lake.read("personas", "partition = ? AND method = 'text'", [part]).height
        rejects = lake.read("rejects", "partition = ? AND stage = 'text_personas'", [part]).height
        assert texts > 0 and rows + rejects == 2 * texts, (part, texts, rows, rejects)
    calls = cache.calls_frame()
    ok = calls.filter(pl.col("status") == "ok")
    # each answer stored once, and an answer once received is never asked again
    assert ok["request_hash"].n_unique() == ok.height
    assert len(cache.get_many(ok["request_hash"].to_list())) == ok.height
    # one budget for the night: its books agree with the journal, and it was never passed
    spent = ok["cost_usd"].sum()
    books = cache.admit(Hold(f"night-{NIGHT}", "check", 0, 0.0, time.time() + 1), 0, 0.0, None, None)
    assert books.spent_cost == pytest.approx(spent) and spent <= CAP_USD
    exhausted = lake.read("rejects", "reason LIKE 'budget_exhausted%'")
    assert exhausted.height > 0, spent  # the cap did bind: without one budget each shard would spend it all
    # one rate for the key: what the provider accepted stayed within it, and it refused (almost) none
    assert max_in_window(server.times, 2.0) <= RPM / 60 * 3 + 2
    assert len(server.limited) <= 0.02 * len(server.times) + 1
    # the planted secrets: nowhere in the lake, the logs, Dagster's storage, the journal or the report
    planted = [PLANTED_KEY, PLANTED_PG_PASSWORD, s3_server.secret_key]
    assert {h.get("authorization") for h in server.headers} == {f"Bearer {PLANTED_KEY}"}  # it was used
    assert calls["error"].str.contains("Incorrect API key provided", literal=True).any()
    write_report(lake, partition=f"{NIGHT}.s1")
    leaks = {}
    for key in lake.files.list():
        found = _secrets_in(lake.files.get(key), key, planted)
        if found:
            leaks[key] = found
    for k, out in enumerate(outputs):
        leaks.update(
            {f"run output {k}": [s for s in planted if s in out]} if any(s in out for s in planted) else {}
        )
    for path in (p for p in home.rglob("*") if p.is_file()):
        found = [s for s in planted if s.encode() in path.read_bytes()]
        leaks.update({str(path): found} if found else {})
    for column in ("error", "model", "stage"):
        assert not any(s in str(calls[column].to_list()) for s in planted)
    for run in instance.get_runs():
        blob = json.dumps(run.run_config, default=str) + "".join(
            dg_serialize(event) for event in instance.all_logs(run.run_id)
        )
        found = [s for s in planted if s in blob]
        leaks.update({f"run {run.run_id}": found} if found else {})
    assert leaks == {}
    print(
        f"\nnight: {ok.height} answers, {calls.height - ok.height} failed attempts, ${spent:.5f} of "
        f"${CAP_USD}, {len(server.limited)} 429s of {len(server.times)}, {exhausted.height} over budget"
    )


def _finish(proc: subprocess.Popen, timeout_s: float = 300) -> str:
    """A run's output once it succeeded; its output's tail in the failure if it failed or hung."""
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        raise AssertionError(f"the run hung:\n{out[-6000:]}") from None
    assert proc.returncode == 0, out[-6000:]
    return out


def dg_serialize(event) -> str:
    import dagster as dg

    return dg.serialize_value(event)
