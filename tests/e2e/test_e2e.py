"""End to end: the real Definitions, the real embedded LLM (SmolLM2 via llama.cpp) and embedder
(all-MiniLM-L6-v2), a real lake on disk, raw text arriving in the inbox as daily partitions — then
lineage, asset checks, the cache on re-run, a second day growing the hub, and the CLI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.inbox import register
from personahub_dagster.defs.stages.synthesis import registry

pytestmark = pytest.mark.e2e

BENCHMARK = Path(__file__).parents[1] / "fixtures" / "benchmark_math.jsonl"
RUN_CONFIG = {
    "ops": {
        "raw_texts": {"config": {"max_texts": 3}},
        "text_personas": {"config": {"perspectives": ["read", "write"]}},
        "expanded_personas": {"config": {"hops": 2}},
        "contamination_checks": {"config": {"against": [str(BENCHMARK)], "text_field": "problem"}},
    }
}
SYNTHESIS = {t.asset: t for t in registry().values()}
DAY1, DAY2 = "2026-11-20", "2026-11-21"
SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "sample.jsonl"
FRENCH_PAGE = (
    "Le jardin communautaire de la rue des Écoles accueille les habitants du quartier chaque été. On y "
    "cultive des légumes, des fleurs et des herbes aromatiques ; les enfants apprennent à reconnaître les "
    "saisons, et les bénévoles organisent des ateliers de compostage le samedi matin."
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    lake_dir, inbox = tmp_path_factory.mktemp("lake"), tmp_path_factory.mktemp("inbox")
    register(SAMPLE, inbox, DAY1)
    mp = pytest.MonkeyPatch()
    mp.setenv("PERSONAHUB_LAKE", str(lake_dir))
    mp.setenv("PERSONAHUB_INBOX", str(inbox))
    from personahub_dagster.definitions import defs

    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    job = definitions.resolve_job_def("persona_hub_pipeline")
    first = job.execute_in_process(run_config=RUN_CONFIG, instance=instance, partition_key=DAY1)
    yield Lake(lake_dir), definitions, job, instance, first, inbox
    mp.undo()


def test_definitions_hold_the_whole_pipeline(pipeline, pipeline_assets):
    _, definitions, *_ = pipeline
    keys = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    assert keys == pipeline_assets and set(SYNTHESIS) < keys


def test_every_stage_produced_rows(pipeline):
    lake, _, _, _, first, _ = pipeline
    assert first.success
    counts = lake.counts()
    assert counts["source_texts"] == 3
    assert counts["personas"] >= 3 and counts["hub"] == counts["personas"]
    assert counts["generations"] >= 1
    assert counts["llm_calls"] >= 6 + counts["generations"]
    with lake.connect() as con:
        assert con.execute("SELECT max(hop) FROM personas").fetchone()[0] == 2
        assert (
            con.execute(
                "SELECT count(*) FROM llm_calls WHERE model LIKE 'local/%' AND status = 'ok' "
                "AND completion_tokens > 0"
            ).fetchone()[0]
            == counts["llm_calls"]
        )
    # the tables are plain Delta tables: any Delta reader answers the same questions
    assert pl.read_delta(lake.table_uri("generations")).height == counts["generations"]


def test_every_generated_row_walks_back_to_its_source_text(pipeline):
    lake, *_ = pipeline
    generations = lake.read("generations")
    texts = set(lake.read("source_texts")["text_id"])
    for row in generations.iter_rows(named=True):
        chain = lake.lineage(row["row_id"])
        assert chain[0].id == row["row_id"] and chain[1].id == row["persona_id"]
        assert chain[-1].kind == "text" and chain[-1].id in texts and chain[-1].id == row["source_text_id"]
        personas = [s for s in chain if s.kind == "persona"]
        assert personas[-1].detail["method"] == "text"
        assert [s.detail["hop"] for s in personas] == list(range(len(personas) - 1, -1, -1))


def test_every_relation_persona_walks_back_to_a_text(pipeline):
    lake, *_ = pipeline
    derived = lake.read("personas", "method = 'relation'")
    assert derived.height >= 1
    for pid in derived["persona_id"]:
        assert lake.lineage(pid)[-1].kind == "text"


def test_rematerializing_makes_no_new_llm_calls(pipeline):
    lake, _, job, instance, _, _ = pipeline
    before = lake.counts()
    again = job.execute_in_process(run_config=RUN_CONFIG, instance=instance, partition_key=DAY1)
    assert again.success
    after = lake.counts()
    assert after["llm_calls"] == before["llm_calls"]
    assert after["generations"] == before["generations"] and after["personas"] == before["personas"]
    mats = again.asset_materializations_for_node("math_problems")
    assert mats[0].metadata["llm_cache_hit_rate"].value == 1.0


def test_cli_lineage_and_stats(pipeline, capsys):
    lake, *_ = pipeline
    row_id = lake.read("generations")["row_id"][0]
    assert cli(["lineage", row_id, "--lake", str(lake.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"generation {row_id}") and "↳ text t-" in out
    assert cli(["stats", "--lake", str(lake.root)]) == 0
    assert "personas by method and hop" in capsys.readouterr().out
    assert cli(["lineage", "g-" + "0" * 20, "--lake", str(lake.root)]) == 1


def test_every_text_and_perspective_gives_a_persona_or_a_reason(pipeline):
    lake, *_ = pipeline
    with lake.connect() as con:
        missing = con.execute(
            """
            SELECT t.text_id, p.perspective
            FROM source_texts t CROSS JOIN (VALUES ('read'), ('write')) p(perspective)
            WHERE NOT EXISTS (SELECT 1 FROM personas x WHERE x.method = 'text'
                              AND x.source_text_id = t.text_id AND x.perspective = p.perspective)
              AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.stage = 'text_personas'
                              AND r.input_id = t.text_id || '|' || p.perspective)
            """
        ).fetchall()
        reasons = con.execute("SELECT count(*) FROM rejects WHERE reason IS NULL").fetchone()[0]
    assert missing == [] and reasons == 0


def test_every_data_type_is_synthesized_and_every_request_accounted_for(pipeline):
    """With the real local model: each of the six types yields rows, every prompting mode yields rows,
    and each (type, mode) request ends as a row or a reject with its reason."""
    lake, _, _, _, first, _ = pipeline
    with lake.connect() as con:
        produced = dict(con.execute("SELECT data_type, count(*) FROM generations GROUP BY 1").fetchall())
        # the post-training stages write generations too (their own tests account for them)
        produced = {k: v for k, v in produced.items() if k not in ("verifiable_instruction", "conversation")}
        modes = {r[0] for r in con.execute("SELECT DISTINCT prompting_mode FROM generations").fetchall()}
        for asset, dt in SYNTHESIS.items():
            used = first.asset_materializations_for_node(asset)[0].metadata["personas_used"].value
            rows, rejects = con.execute(
                "SELECT (SELECT count(*) FROM generations WHERE data_type = ?), "
                "(SELECT count(*) FROM rejects WHERE stage = ? AND reason IS NOT NULL)",
                [dt.name, asset],
            ).fetchone()
            assert rows + rejects == used * len(dt.modes), asset
    assert set(produced) == {dt.name for dt in SYNTHESIS.values()}, produced
    assert modes == {"zero_shot", "few_shot", "persona_few_shot"}


def test_math_problems_are_checked_and_datasets_exported(pipeline):
    lake, *_ = pipeline
    with lake.connect() as con:
        problems = con.execute(
            "SELECT count(*) FROM generations WHERE data_type = 'math_problem'"
        ).fetchone()[0]
        checks = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE n_solutions >= 1) FROM math_checks"
        ).fetchone()
    assert checks[0] == problems and checks[1] >= 1
    for dt in registry().values():
        df = pl.read_parquet(lake.root / "datasets" / dt.release / f"{DAY1}.parquet")
        assert df.columns[:3] == ["input persona", "synthesized text", "description"]
        assert df["input persona"].null_count() == 0 and df["source_text_id"].str.starts_with("t-").all()
        jsonl = (lake.root / "datasets" / dt.release / f"{DAY1}.jsonl").read_text().splitlines()
        assert len(jsonl) == df.height


def test_asset_checks_pass_on_the_real_run(pipeline):
    *_, first, _ = pipeline
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in first.get_asset_check_evaluations()
    }
    for asset in SYNTHESIS:
        assert evaluations[(asset, "lineage")].passed
        assert {(asset, "reject_rate"), (asset, "not_empty")} <= set(evaluations)
    assert evaluations[("datasets", "export_schema")].passed and evaluations[("datasets", "lineage")].passed
    assert evaluations[("raw_texts", "not_empty")].passed
    assert ("persona_hub", "dedup_ratio") in evaluations and ("text_personas", "reject_rate") in evaluations


def test_a_second_day_grows_the_hub_and_recomputes_nothing_of_the_first(pipeline, tmp_path):
    lake, _, job, instance, _, inbox = pipeline
    # day 2: two other texts of the corpus, and a French page saved in Latin-1
    day1_texts = set(lake.read("source_texts", "partition = ?", [DAY1])["text"])
    other = pl.read_ndjson(SAMPLE).filter(~pl.col("text").is_in(list(day1_texts))).head(2)
    other.write_ndjson(tmp_path / "day2.jsonl")
    register(tmp_path / "day2.jsonl", inbox, DAY2)
    (tmp_path / "jardin.txt").write_bytes(FRENCH_PAGE.encode("latin-1"))
    register(tmp_path / "jardin.txt", inbox, DAY2)

    def day1_hub_commits() -> list[int]:
        return [c["version"] for c in lake.history("hub", None) if c.get("personahub.partition") == DAY1]

    day1_commits = day1_hub_commits()
    with lake.connect() as con:
        day1_calls = {r[0] for r in con.execute("SELECT request_hash FROM llm_calls").fetchall()}
    upstream = [dg.AssetKey(a) for a in ("raw_texts", "text_personas", "expanded_personas", "persona_hub")]
    second = job.execute_in_process(
        run_config=RUN_CONFIG, instance=instance, partition_key=DAY2, asset_selection=upstream
    )
    assert second.success
    hub_meta = second.asset_materializations_for_node("persona_hub")[0].metadata
    assert hub_meta["partitions_marked"].value == [DAY2] and hub_meta["partitions_reused"].value == []
    assert hub_meta["state_rebuilds"].value == 0 and hub_meta["late_arrival"].value is False
    assert day1_hub_commits() == day1_commits  # day 1's marks were not rewritten
    with lake.connect() as con:
        new_calls = {r[0] for r in con.execute("SELECT request_hash FROM llm_calls").fetchall()} - day1_calls
        day2_hashes = {
            r[0]
            for r in con.execute(
                "SELECT request_hash FROM personas WHERE partition = ? UNION "
                "SELECT request_hash FROM rejects WHERE partition = ? AND request_hash IS NOT NULL",
                [DAY2, DAY2],
            ).fetchall()
        }
        sources = {r[0] for r in con.execute("SELECT DISTINCT partition FROM source_texts").fetchall()}
    assert new_calls and new_calls == day2_hashes  # every new call is day 2's work, none repeats day 1
    assert sources == {DAY1, DAY2}
    # the Latin-1 page was read by its encoding and became a persona
    [french] = lake.read("source_texts", "partition = ? AND doc_id = 'jardin'", [DAY2]).iter_rows(named=True)
    assert french["encoding"] == "cp1252" and french["language"] == "fr" and "Écoles" in french["text"]
    assert lake.read("personas", "source_text_id = ?", [french["text_id"]]).height >= 1
    day2 = lake.read("hub", "partition = ?", [DAY2])
    kept = set(lake.read("hub", "dup_of IS NULL")["persona_id"])
    assert day2.height > 0 and set(day2["dup_of"].drop_nulls()) <= kept  # marks point at kept personas


def test_the_day_is_evaluated_and_reported(pipeline):
    lake, *_ = pipeline
    checked = lake.read("contamination", "partition = ?", [DAY1])
    made = lake.read("generations", "partition = ?", [DAY1])
    assert set(checked["row_id"]) == set(made["row_id"]) and set(checked["benchmark"]) == {BENCHMARK.name}
    pairs = lake.read("diversity_pairs", "partition = ?", [DAY1])
    assert pairs.height > 0 and ((pairs["persona_similarity"] - pairs["band"]).abs() <= 0.01).all()
    assert pairs["problem_similarity"].is_between(-1, 1.0001).all()
    page = (lake.root / "reports" / f"{DAY1}.html").read_text()
    for section in ("Yield per stage", "LLM calls", "Hub", "Diversity", "Contamination", "Math validity"):
        assert f"<h2>{section}" in page


def test_the_hub_is_described_and_persona_fidelity_measured_on_the_real_run(pipeline, capsys):
    lake, *_, first, _ = pipeline
    kept = lake.read("hub", "dup_of IS NULL", partitions=[DAY1])
    described = lake.read("persona_attributes", partitions=[DAY1])
    refused = lake.read("rejects", "stage = 'persona_attributes'", partitions=[DAY1])
    assert set(described["persona_id"]) | set(refused["input_id"]) == set(kept["persona_id"])
    assert described.height >= 0.8 * kept.height
    assert set(described["locale"]) == {"en"} and described["domain"].is_not_null().all()
    # the embedded model fills every field; whatever the persona does not state is unknown, with why
    unstated = described.filter(pl.col("corrected").is_not_null())
    assert (unstated.height == 0) or unstated["corrected"].str.contains("persona").all()
    composition = lake.read("hub_composition", partitions=[DAY1])
    assert composition.filter(pl.col("attribute") == "locale")["personas"].sum() == kept.height

    fidelity = lake.read("persona_fidelity", partitions=[DAY1])
    assert {"retrieval_top1", "distinct_2", "vendi"} <= set(fidelity["metric"])
    top1 = fidelity.filter(pl.col("metric") == "retrieval_top1")
    assert top1["value"].is_between(0, 1).all() and (top1["baseline"] > 0).all()
    checks = {e.check_name for e in first.get_asset_check_evaluations()}
    assert {"fidelity_floor", "composition_drift"} <= checks
    page = (lake.root / "reports" / f"{DAY1}.html").read_text()
    assert "<h2>Hub composition" in page and "<h2>Persona fidelity" in page

    assert cli(["evaluate", "fidelity", "--date", DAY1, "--lake", str(lake.root), "--lift-rows", "0"]) == 0
    assert "retrieval_top1" in capsys.readouterr().out


def test_the_data_people_train_on_today_is_made_on_the_real_run(pipeline, tmp_path):
    lake, *_, first, _ = pipeline
    # verifiable instructions: every answer judged on every constraint, each row's constraints all met
    made = lake.read("generations", "data_type = 'verifiable_instruction'", partitions=[DAY1])
    checks = lake.read("constraint_checks", partitions=[DAY1])
    assert checks.height > 0 and set(made["row_id"]) <= set(checks.filter("passed")["row_id"])
    # conversations: alternating turns, each walking back to its text
    turns = lake.read("conversation_turns", partitions=[DAY1])
    talk = lake.read("rejects", "stage = 'conversations'", partitions=[DAY1])
    assert turns.height > 0 or talk.height > 0
    for _, group in turns.group_by("conversation_id"):
        assert group.sort("turn")["role"].to_list()[:2] == ["user", "assistant"]
    if turns.height:
        assert lake.lineage(turns["turn_id"][0])[-1].kind == "text"
    # judged pairs: every sampled row is a pair or a reject with its reason
    [event] = first.asset_materializations_for_node("preference_pairs")
    sampled = event.metadata["rows_sampled"].value
    judged = lake.read("preference_pairs", "judge <> 'checker'", partitions=[DAY1])
    refused = lake.read("rejects", "stage = 'preference_pairs'", partitions=[DAY1])
    assert sampled > 0 and judged.height + refused.height == sampled
    assert cli(["publish", str(tmp_path / "published"), "--lake", str(lake.root), "--date", DAY1]) == 0
    assert (tmp_path / "published" / "README.md").exists()
