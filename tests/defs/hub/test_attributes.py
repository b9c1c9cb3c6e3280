"""``persona_attributes`` and ``hub_composition`` over several nights: the hub grown for real (the
packaged embedder, the saved state), attributes asked of a scripted model and held to the persona's
words, topic clusters trained once and then only assigned from each day's stored vectors, the hub's
composition summed from the days, and a drift from the target mix reported."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from personahub_dagster.core.evaluation.report import build_report
from personahub_dagster.core.hub import clusters
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.defs.hub.attributes import composition, persona_attributes
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.resources import (
    EmbedderResource,
    LakeResource,
    LLMResource,
    PromptsResource,
    RayClusterResource,
)

DAYS = ["2026-03-01", "2026-03-02"]
JOBS = {
    "nurse": "health",
    "surgeon": "health",
    "teacher": "education",
    "librarian": "education",
    "carpenter": "trades",
    "welder": "trades",
    "violinist": "arts",
    "painter": "arts",
    "accountant": "finance",
    "banker": "finance",
}
PLACES = [
    "Lyon",
    "Osaka",
    "Lagos",
    "Lima",
    "Oslo",
    "Perth",
    "Quito",
    "Hanoi",
    "Tunis",
    "Porto",
    "Delhi",
    "Cusco",
]
HOBBIES = [
    "keeps bees",
    "restores old boats",
    "coaches youth football",
    "writes crime novels",
    "grows orchids",
]


def personas(day: str, n: int, offset: int) -> pl.DataFrame:
    rows = []
    for i in range(offset, offset + n):
        job = list(JOBS)[i % len(JOBS)]
        place, hobby = PLACES[(i // len(JOBS)) % len(PLACES)], HOBBIES[(i // 120) % len(HOBBIES)]
        retired = "retired " if i % 4 == 0 else ""
        rows.append(
            {
                "persona_id": f"p-{i:04d}",
                "persona": f"A {retired}{job} from {place} who {hobby} and volunteers at event {i}.",
                "method": "text",
                "hop": 0,
                "source_text_id": f"t-{i % 7}",
                "locale": "fr" if i % 3 == 0 else "en",
                "language": "en",
                "partition": day,
                "created_at": now_utc(),
            }
        )
    return rows_frame("personas", rows)


def scripted_model(_n: int, body: dict) -> tuple[str, str]:
    """JSON attributes read off the persona (an age band always, so the check must drop the unstated
    ones), and a label for a cluster."""
    text = body["messages"][-1]["content"]
    if text.startswith("These people belong to one group"):
        return "ok", "Working people of many towns"
    persona = text.split("Persona: ", 1)[1].split("\n", 1)[0]
    job = next(j for j in JOBS if j in persona)
    answer = {
        "domain": JOBS[job],
        "occupation": job,
        "expertise_level": "expert",
        "age_band": "older adult" if "retired" in persona else "adult",
    }
    return "ok", json.dumps(answer)


def night(tmp_path, server, day: str, composition_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [persona_hub, persona_attributes, composition],
        partition_key=day,
        resources={
            "lake": LakeResource(path=str(tmp_path / "lake")),
            "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
            "embedder": EmbedderResource(),
            "prompts": PromptsResource(),
            "ray_cluster": RayClusterResource(),  # not used: the hub grows in the run's process
        },
        run_config={
            "ops": {
                "persona_hub": {"config": {"cosine_threshold": 0.99}},
                "persona_attributes": {"config": {"clusters": 4, "min_sample_to_cluster": 100}},
                "hub_composition": {"config": composition_config or {}},
            }
        },
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_attributes_clusters_and_composition_over_nights(tmp_path, fake_provider):
    lake = Lake(tmp_path / "lake")
    server = fake_provider(scripted_model)
    lake.write("personas", personas(DAYS[0], 160, 0), producer="text_personas", partition=DAYS[0])
    assert night(tmp_path, server, DAYS[0]).success

    first = lake.read("persona_attributes", partitions=[DAYS[0]])
    kept = lake.read("hub", "dup_of IS NULL", partitions=[DAYS[0]])
    assert first.height == kept.height > 100
    retired = first.filter(pl.col("persona").str.contains("retired"))
    assert set(retired["age_band"]) == {"older adult"}  # stated: kept
    others = first.filter(~pl.col("persona").str.contains("retired"))
    assert set(others["age_band"]) == {"unknown"}  # "adult" was never stated: dropped, with the reason
    assert json.loads(others["corrected"][0]) == {"age_band": "the persona states no age or life stage"}
    assert set(first["locale"]) == {"fr", "en"} and first["occupation"].is_in(list(JOBS)).all()

    live, _ = clusters.current(lake.files.child("clusters"))
    assert live is not None and live.k == 4 and live.trained_on == 160 - (160 - kept.height)
    assert set(first["clustering"]) == {live.version} and first["cluster_id"].is_between(0, 3).all()
    assert set(first["cluster_label"]) == {"Working people of many towns"}
    labels_asked = sum("These people belong to one group" in str(r["messages"]) for r in server.requests)
    assert labels_asked == 4

    # night 2: the day's personas are assigned to the same centroids, nothing is trained again
    lake.write("personas", personas(DAYS[1], 40, 1000), producer="text_personas", partition=DAYS[1])
    before = len(server.requests)
    target = {"domain": {"health": 0.2, "law": 0.3}}
    result = night(tmp_path, server, DAYS[1], {"target_mix": target, "max_drift": 0.1})
    assert result.success
    assert clusters.current(lake.files.child("clusters"))[0].version == live.version
    second = lake.read("persona_attributes", partitions=[DAYS[1]])
    assert set(second["clustering"]) == {live.version}
    asked = server.requests[before:]
    assert len(asked) == second.height  # one attribute call per new persona; no labels, no day 1
    # the same vectors give the same cluster: a persona's id is its nearest centroid's
    vectors = clusters.partition_vectors(lake.files.child("hub_state"), DAYS[1])
    assert vectors.height == second.height
    ids, _ = live.assign(vectors.sort("persona_id")["vector"].to_numpy())
    assert ids.tolist() == second.sort("persona_id")["cluster_id"].to_list()

    # the hub's composition: the two days' counts summed
    hub = lake.read("hub_composition")
    domain = hub.filter(pl.col("attribute") == "domain").group_by("value").agg(pl.col("personas").sum())
    both = pl.concat([first, second])
    assert dict(domain.iter_rows()) == dict(both.group_by("domain").len().iter_rows())
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "composition_drift"]
    assert not check.passed  # law: 0 of the hub, target 0.3
    drifting = check.metadata["drifting"].value
    assert [d["value"] for d in drifting] == ["law"] and drifting[0]["share"] == 0.0


def test_the_report_shows_the_hubs_composition(tmp_path, fake_provider):
    lake = Lake(tmp_path / "lake")
    lake.write("personas", personas(DAYS[0], 120, 0), producer="text_personas", partition=DAYS[0])
    assert night(tmp_path, fake_provider(scripted_model), DAYS[0]).success
    page = build_report(lake, DAYS[0])
    assert "<h2>Hub composition</h2>" in page and "Working people of many towns" in page
    assert page.count("<h3>") == 5  # domain, locale, expertise, age band, cluster
