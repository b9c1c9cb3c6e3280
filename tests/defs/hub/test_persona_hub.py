"""``persona_hub`` on a Ray cluster through Dagster: the same pipeline over two days on two lakes, one
growing the hub in the run's process, one searching the saved hub with shard actors on the session's
Ray cluster (dagster-ray's resource connects the step) — the hub tables are the same."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import polars as pl

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.inbox import register
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.resources import (
    EmbedderResource,
    LakeResource,
    LLMResource,
    PromptsResource,
    RayClusterResource,
)
from personahub_dagster.defs.stages.ingest import raw_texts
from personahub_dagster.defs.stages.personas import expanded_personas, text_personas

DAYS = ["2026-06-01", "2026-06-02"]
JOBS = ["carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian", "welder"]


def personas_by_request(_n: int, body: dict) -> tuple[str, str]:
    """One well-formed persona per distinct request, and the same one for the same request."""
    h = hashlib.sha256(f"{body['messages']}{body.get('seed')}".encode()).hexdigest()
    job = JOBS[int(h[:2], 16) % len(JOBS)]
    return "ok", f"A {job} who restores old boats on the river and teaches weekend classes ({h[:6]})."


def run_day(lake: str, inbox: str, day: str, server, ray_address: str, engine: str):
    return dg.materialize(
        [raw_texts, text_personas, expanded_personas, persona_hub],
        partition_key=day,
        resources={
            "lake": LakeResource(path=lake, inbox=inbox),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "embedder": EmbedderResource(),
            "prompts": PromptsResource(),
            "ray_cluster": RayClusterResource(address=ray_address),
        },
        run_config={
            "ops": {
                "raw_texts": {"config": {"max_texts": None}},
                "text_personas": {"config": {"perspectives": ["read", "write"]}},
                "expanded_personas": {"config": {"hops": 1}},
                "persona_hub": {"config": {"engine": engine, "ray_shard_rows": 30}},
            }
        },
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_the_hub_grown_on_ray_through_dagster_is_the_hub_grown_in_process(
    tmp_path, fake_provider, ray_cluster
):
    inbox = tmp_path / "inbox"
    sample = Path("assets/corpus/sample.jsonl").read_text().splitlines(True)[:8]
    for k, day in enumerate(DAYS):
        corpus = tmp_path / f"{day}.jsonl"
        corpus.write_text("".join(sample[4 * k : 4 * k + 4]))
        register(corpus, inbox, day)
    server = fake_provider(personas_by_request)
    engines = {}
    for name, second_day in (("local", "local"), ("ray", "ray")):
        lake = str(tmp_path / name)
        run_day(lake, str(inbox), DAYS[0], server, ray_cluster, "local")  # the first day: nothing saved yet
        result = run_day(lake, str(inbox), DAYS[1], server, ray_cluster, second_day)
        assert result.success
        [hub] = result.asset_materializations_for_node("persona_hub")
        engines[name] = hub.metadata["engine"].value
    assert engines == {"local": "local", "ray": "ray"}
    columns = ["persona_id", "dup_of", "dup_reason", "similarity", "nearest_similarity", "partition"]
    hubs = [Lake(tmp_path / name).read("hub").select(columns).sort("persona_id") for name in ("local", "ray")]
    assert hubs[0].height > 20 and hubs[0].equals(hubs[1])
    assert hubs[1].filter(pl.col("partition") == DAYS[1]).height > 0


def test_the_ray_resource_touches_no_cluster_until_the_engine_asks():
    """Built by Dagster from its config (as every run builds it), the resource neither starts nor
    joins a cluster at step start: a hub grown in process never pays for Ray."""
    seen = {}

    @dg.asset
    def probe(ray_cluster: RayClusterResource) -> None:
        seen.update(lifecycle=ray_cluster.lifecycle, connected=ray_cluster.connected)

    assert dg.materialize([probe], resources={"ray_cluster": RayClusterResource()}).success
    assert seen["connected"] is False
    assert not (seen["lifecycle"].create or seen["lifecycle"].wait or seen["lifecycle"].connect)
