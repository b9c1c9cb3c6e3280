"""Evaluation: similarity bands, hub statistics, contamination (with planted items that must be found),
the diversity run against a scripted provider, the HTML report, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.evaluation.contamination import check_contamination, load_benchmark
from personahub_dagster.core.evaluation.diversity import band_summary, diversity, pairs_in_bands
from personahub_dagster.core.evaluation.hub_stats import cluster_count, nearest_similarities
from personahub_dagster.core.evaluation.report import build_report
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.lake.export import export_frame
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.data_types import load_data_types
from personahub_dagster.core.stages.prompts import load_prompt
from tests.support.fake_openai import FakeOpenAI

BENCHMARK = Path(__file__).parents[2] / "fixtures" / "benchmark_math.jsonl"
DAY = "2026-11-20"


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def planted_pairs(cosines: list[float], dim: int = 64, seed: int = 0) -> np.ndarray:
    """Pairs of unit vectors with exactly the given cosines, each pair far from every other."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    rows = []
    for k, c in enumerate(cosines):
        a, b = basis[:, 2 * k], basis[:, 2 * k + 1]
        rows += [a, c * a + np.sqrt(1 - c * c) * b]
    return unit(np.array(rows))


def test_pairs_fall_in_their_bands_and_the_sample_is_seeded():
    vecs = planted_pairs([0.4, 0.405, 0.6, 0.8, 0.8, 0.9, 0.7, 0.5])
    pairs = pairs_in_bands(vecs, per_band=5, seed=3)
    assert {p.band for p in pairs} == {0.4, 0.6, 0.8, 0.9}
    assert all(abs(p.similarity - p.band) <= 0.01 for p in pairs)
    assert sorted((p.a, p.b) for p in pairs if p.band == 0.8) == [(6, 7), (8, 9)]
    assert pairs == pairs_in_bands(vecs, per_band=5, seed=3)
    assert len(pairs_in_bands(vecs, per_band=1, seed=3)) == 4


def test_nearest_similarities_and_clusters():
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(3, 32)))
    vecs = unit(np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(30, 32)))
    assert cluster_count(vecs, 0.75) == 3
    assert cluster_count(vecs, 0.9999) == 30
    nn = nearest_similarities(vecs)
    assert nn.shape == (30,) and (nn > 0.9).all()


def generations(lake: Lake, outputs: list[str]) -> list[str]:
    rows = [
        {
            "row_id": f"g-{i:04d}",
            "data_type": "math_problem",
            "prompting_mode": "zero_shot",
            "persona_id": f"p-{i:04d}",
            "source_text_id": "t-0",
            "output": text,
            "created_at": now_utc(),
            "partition": DAY,
        }
        for i, text in enumerate(outputs)
    ]
    lake.write("generations", rows_frame("generations", rows), producer="math_problems", partition=DAY)
    return [r["row_id"] for r in rows]


def test_planted_contaminated_items_are_found_and_left_out_of_exports(tmp_path):
    name, items = load_benchmark(BENCHMARK, "problem")
    assert name == "benchmark_math.jsonl" and len(items) == 20
    copied = "Math problem: " + items[0]  # a benchmark item, verbatim inside our row
    # Item 7 reworded every few words: no 13 words in a row survive, the meaning does.
    edited = (
        "A train covers 240 miles at a constant speed. Had the speed been 20 miles per hour faster, "
        "the journey would have taken one hour less. What was the train's original speed?"
    )
    clean = "Math problem: A beekeeper harvests 18 kg of honey from each of 7 hives. How much in total?"
    lake = Lake(tmp_path / "lake")
    ids = generations(lake, [copied, edited, clean])
    found = check_contamination(lake, {name: items}, Embedder(), partitions=[DAY])
    by_row = {r["row_id"]: r for r in found.iter_rows(named=True)}
    assert by_row[ids[0]]["flagged"] and "13-gram" in by_row[ids[0]]["reason"]
    assert by_row[ids[0]]["benchmark_item"] == 0 and by_row[ids[0]]["ngram_hits"] >= 20
    assert by_row[ids[1]]["flagged"] and by_row[ids[1]]["reason"] == "embedding"  # no 13-gram survives
    assert by_row[ids[1]]["benchmark_item"] == 7 and by_row[ids[1]]["similarity"] >= 0.9
    assert not by_row[ids[2]]["flagged"] and by_row[ids[2]]["reason"] is None

    assert export_frame(lake, "math_problem")["row_id"].to_list() == [ids[2]]
    everything = export_frame(lake, "math_problem", include_contaminated=True)
    assert dict(zip(everything["row_id"], everything["contaminated"], strict=True)) == {
        ids[0]: True,
        ids[1]: True,
        ids[2]: False,
    }


def test_a_benchmark_without_the_text_column_is_a_clear_error():
    with pytest.raises(ValueError, match="no texts in field 'question'"):
        load_benchmark(BENCHMARK, "question")


PERSONAS = [
    "A retired violinist who teaches children to play in a small village music school.",
    "A retired violinist who teaches teenagers to play in a small town music school.",
    "A young cellist who teaches children to play in a small village music school.",
    "A marine biologist who studies coral reefs and the fish that live on them.",
    "A marine biologist who studies kelp forests and the otters that live in them.",
    "A long-haul truck driver who listens to history podcasts on night shifts.",
    "A pastry chef who runs a bakery and experiments with sourdough recipes.",
    "A pastry chef who runs a café and experiments with gluten-free recipes.",
    "A tax accountant who volunteers as a youth football coach at weekends.",
    "A glassblower who sells vases at craft fairs across the region.",
    "A civil engineer who inspects old railway bridges for corrosion damage.",
    "A civil engineer who inspects old road bridges for structural damage.",
]


def problem_for(_n: int, body: dict) -> tuple[str, str]:
    """A problem built from the persona's words: similar personas get similar problems."""
    persona = re.search(r"Persona: (.+)", body["messages"][-1]["content"]).group(1)
    return "ok", f"Math problem: {persona} If 12 of them take 3 hours each, how many hours in total?"


def test_diversity_bands_against_a_scripted_provider(make_gateway):
    hub = rows_frame(
        "hub",
        [{"persona_id": f"p-{i:02d}", "persona": p, "source_text_id": "t-0"} for i, p in enumerate(PERSONAS)],
    )
    math = load_data_types()["math_problem"]
    with FakeOpenAI(problem_for) as server:
        embedder = Embedder()
        pairs, out, stats = diversity(
            hub,
            embedder.encode(hub["persona"].to_list()),
            embedder,
            make_gateway(server),
            math,
            load_prompt(math.template),
            bands=(0.2, 0.4, 0.6, 0.8),
            tolerance=0.1,
            per_band=3,
            partition=DAY,
        )
    assert {b["temperature"] for b in server.requests} == {0.0}
    assert stats["personas"] == len(PERSONAS) and 1 <= stats["clusters"] <= len(PERSONAS)
    assert pairs.height >= 6 and out.rejects.is_empty()
    assert ((pairs["persona_similarity"] - pairs["band"]).abs() <= 0.1).all()
    summary = band_summary(pairs)
    assert summary["pairs"].sum() == pairs.height
    means = summary["mean"].to_list()
    assert means[0] < means[-1]  # problems of similar personas are more alike than of distant ones


def test_the_report_is_self_contained_and_has_every_section(tmp_path, capsys):
    lake = Lake(tmp_path / "lake")
    generations(lake, ["Math problem: " + load_benchmark(BENCHMARK, "problem")[1][0], "Math problem: 2 + 2?"])
    lake.write(
        "diversity_pairs",
        rows_frame(
            "diversity_pairs",
            [
                {
                    "band": b,
                    "persona_a": "p-1",
                    "persona_b": "p-2",
                    "persona_similarity": b,
                    "problem_similarity": b / 2,
                    "partition": DAY,
                }
                for b in (0.4, 0.6, 0.8, 0.9)
            ],
        ),
        producer="diversity_bands",
        partition=DAY,
    )
    assert cli(["evaluate", "contamination", "--against", str(BENCHMARK), "--text-field", "problem",
                "--lake", str(lake.root)]) == 0  # fmt: skip
    assert "1 flagged" in capsys.readouterr().out
    page = build_report(lake)
    for section in ("Tables", "Yield per stage", "Reject reasons", "LLM calls", "Diversity", "Contamination"):
        assert f"<h2>{section}" in page
    assert page.count("data:image/png;base64,") == 1  # the diversity box plot, inlined
    assert not re.search(r"(src|href)=[\"']https?://", page)  # nothing fetched from outside
    out = tmp_path / "r.html"
    assert cli(["report", "--out", str(out), "--lake", str(lake.root)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    assert json.loads(json.dumps(lake.counts()))["contamination"] == 2
    assert pl.read_parquet(next((lake.root / "tables" / "contamination").rglob("*.parquet"))).height == 2
