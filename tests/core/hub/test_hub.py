"""The hub grows a partition at a time with its state in the lake: arrival order, no silent rebuild."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from personahub_dagster.cli import main as cli
from personahub_dagster.core.hub.config import DedupConfig, StateError
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.growth import grow_hub, rebuild_hub
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.sample import read_sample, sample_vectors
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.storage.store import Store, as_store, retried

DAY1 = [
    "A pediatric nurse who works night shifts in a busy children's hospital.",
    "A jazz pianist who teaches harmony to adult beginners in Chicago.",
    "A pediatric nurse who works night shifts in a busy children's hospital!",
]
DAY2 = [
    "A jazz pianist who teaches harmony to adult beginners in Chicago",  # repeats day 1
    "A soil scientist studying no-till farming and water retention in Iowa.",
    "A children's hospital nurse who works the night shift on a busy pediatric ward.",  # rewording of day 1
]


def personas(day: str, texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "persona_id": [f"p-{day}-{i}" for i in range(len(texts))],
            "persona": texts,
            "method": "text",
            "hop": 0,
            "source_text_id": "t-x",
            "parent_persona_id": None,
            "partition": day,
            "created_at": None,
        }
    )


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def grow_days(store, days: list[tuple[str, list[str]]], embedder, cfg=None, published=None):
    """Grow ``store`` a day at a time (as the nightly asset does: the day and its published rows)."""
    published = {} if published is None else published
    out = []
    for day, texts in days:
        growth = grow_hub(personas(day, texts), store, embedder, cfg or DedupConfig(), published.get(day))
        published.update(growth.hub)
        out.append(growth)
    return out, published


def test_growth_reuses_old_partitions_and_matches_a_rebuild(tmp_path, embedder):
    cfg = DedupConfig()
    (first, second), published = grow_days(
        tmp_path / "grown", [("2026-01-01", DAY1), ("2026-01-02", DAY2)], embedder
    )
    assert list(first.hub) == ["2026-01-01"] and first.kept_total == 2
    assert list(second.hub) == ["2026-01-02"] and second.late == []
    marks = dict(zip(second.hub["2026-01-02"]["persona_id"], second.hub["2026-01-02"]["dup_of"], strict=True))
    assert marks == {
        "p-2026-01-02-0": "p-2026-01-01-1",
        "p-2026-01-02-1": None,
        "p-2026-01-02-2": "p-2026-01-01-0",
    }

    both = pl.concat([personas("2026-01-01", DAY1), personas("2026-01-02", DAY2)])
    rebuilt = rebuild_hub(both, tmp_path / "scratch", embedder, cfg)
    grown_rows = pl.concat([first.hub["2026-01-01"], second.hub["2026-01-02"]])
    scratch_rows = pl.concat([rebuilt.hub["2026-01-01"], rebuilt.hub["2026-01-02"]])
    assert grown_rows.drop("similarity").equals(scratch_rows.drop("similarity"))

    again = grow_hub(personas("2026-01-01", DAY1), tmp_path / "grown", embedder, cfg, published["2026-01-01"])
    assert again.hub == {} and again.reused == ["2026-01-01"]  # a re-run: nothing re-embedded


def test_a_late_day_is_marked_against_the_hub_as_it_stands_and_no_published_mark_changes(tmp_path, embedder):
    """A backfilled earlier date arrives after later days: it is marked in arrival order (its repeat of
    a later day's persona is the duplicate), the later days' marks stay, nothing is rebuilt."""
    store = tmp_path / "state"
    (_, d3), published = grow_days(
        store, [("2026-01-02", DAY2), ("2026-01-03", ["A beekeeper in Vermont."])], embedder
    )
    before = {d: rows.clone() for d, rows in published.items()}
    manifest = HubIndex.manifest(store)
    (late,), published = grow_days(store, [("2026-01-01", DAY1)], embedder, published=published)
    assert late.late == ["2026-01-01"] and late.new_personas == 3
    marks = dict(zip(late.hub["2026-01-01"]["persona_id"], late.hub["2026-01-01"]["dup_of"], strict=True))
    # the jazz pianist was kept on 2026-01-02: the late day's copy is the duplicate
    assert marks["p-2026-01-01-1"] == "p-2026-01-02-0"
    assert marks["p-2026-01-01-0"] == "p-2026-01-02-2"  # the nurse: the later day's rewording was kept
    after = HubIndex.manifest(store)
    assert after["chunks"][: len(manifest["chunks"])] == manifest["chunks"]  # grown, not rebuilt
    assert [p["name"] for p in after["partitions"]] == ["2026-01-02", "2026-01-03", "2026-01-01"]
    for day, rows in before.items():  # re-running a later day changes nothing
        again = grow_hub(personas(day, DAY2 if day == "2026-01-02" else ["A beekeeper in Vermont."]),
                         store, embedder, DedupConfig(), rows)  # fmt: skip
        assert again.hub == {} and again.reused == [day]
    assert d3.kept_total == 4  # DAY2 alone repeats nothing, and the beekeeper


def test_a_day_remade_with_other_personas_keeps_the_marks_of_those_it_still_has(tmp_path, embedder):
    (_, _), published = grow_days(tmp_path, [("d1", DAY1), ("d2", DAY2)], embedder)
    remade = pl.concat([personas("d1", DAY1[:2]), personas("d1", ["A glassblower in Murano."]).with_columns(
        pl.lit("p-d1-new").alias("persona_id"))])  # fmt: skip
    out = grow_hub(remade, tmp_path, embedder, DedupConfig(), published["d1"])
    rows = out.hub["d1"]
    assert sorted(rows["persona_id"]) == ["p-d1-0", "p-d1-1", "p-d1-new"] and out.new_personas == 1
    assert rows.filter(pl.col("persona_id") != "p-d1-new").equals(
        published["d1"].filter(pl.col("persona_id") != "p-d1-2").sort("persona_id")
    )


def test_no_silent_rebuild_a_state_of_other_settings_or_without_its_marks_is_an_error(tmp_path, embedder):
    grow_days(tmp_path, [("d1", DAY1)], embedder)
    with pytest.raises(StateError, match=r"cosine_threshold 0.9 \(now 0.8\).*hub rebuild"):
        grow_hub(personas("d2", DAY2), tmp_path, embedder, DedupConfig(cosine_threshold=0.8))
    with pytest.raises(StateError, match="no hub rows for it"):
        grow_hub(personas("d1", DAY1), tmp_path, embedder, DedupConfig(), published=None)


def test_a_transient_read_error_on_the_state_is_retried_and_a_lasting_one_fails(
    tmp_path, embedder, monkeypatch
):
    (_,), published = grow_days(tmp_path, [("d1", DAY1)], embedder)
    manifest = HubIndex.manifest(tmp_path)
    real = Store.get
    failures = {"left": 2}

    def flaky(self, key):
        if key.endswith("manifest.json") and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("connection reset by peer")
        return real.__wrapped__(self, key)

    monkeypatch.setattr(Store, "get", retried(flaky))
    (day2,), _ = grow_days(tmp_path, [("d2", DAY2)], embedder, published=published)
    assert failures["left"] == 0 and day2.kept_total == 3  # grown on the saved state, not from nothing
    failures["left"] = 1_000
    with pytest.raises(ConnectionError):
        grow_days(tmp_path, [("d3", ["A beekeeper in Vermont."])], embedder)
    failures["left"] = 0
    after = HubIndex.manifest(tmp_path)
    assert [p["name"] for p in after["partitions"]] == ["d1", "d2"]
    assert after["chunks"][:1] == manifest["chunks"]


def test_the_hub_sample_is_the_smallest_ids_with_their_stored_vectors(tmp_path, embedder):
    texts = [f"A {job} who volunteers at the county library on weekends." for job in
             ("welder", "florist", "surveyor", "midwife", "ferry pilot", "luthier", "glazier")]  # fmt: skip
    store = as_store(tmp_path)
    grow_hub(personas("d1", texts[:4]), store, embedder, DedupConfig(), sample_size=3)
    grow_hub(personas("d2", texts[4:]), store, embedder, DedupConfig(), sample_size=3)
    sample = read_sample(store, HubIndex.manifest(store))
    assert sample["persona_id"].to_list() == ["p-d1-0", "p-d1-1", "p-d1-2"]
    stored = HubIndex.load(store, DedupConfig(), embedder)
    index = [stored.ids.index(i) for i in sample["persona_id"]]
    assert np.allclose(sample_vectors(sample), stored.vectors()[index])


def test_cli_dedup_marks_every_row_and_grows_a_hub(tmp_path):
    src = tmp_path / "released.jsonl"
    src.write_text(
        "".join(json.dumps({"input persona": t, "n": i}) + "\n" for i, t in enumerate(DAY1 + DAY2))
    )
    out = tmp_path / "marked.parquet"
    assert cli(["dedup", str(src), "--out", str(out), "--hub", str(tmp_path / "hub")]) == 0
    marked = pl.read_parquet(out)
    assert marked.height == 6 and marked["n"].to_list() == list(range(6))
    assert dict(zip(marked["n"], marked["dup_reason"], strict=True)) == {
        0: None,
        1: None,
        2: "minhash",
        3: "minhash",
        4: None,
        5: "embedding",
    }
    assert marked["dup_of"].to_list() == [
        None,
        None,
        "released.jsonl#0",
        "released.jsonl#1",
        None,
        "released.jsonl#0",
    ]
    # a second file is checked against the first one's kept personas
    second = tmp_path / "second.jsonl"
    second.write_text(src.read_text())
    again = tmp_path / "again.jsonl"
    assert cli(["dedup", str(second), "--out", str(again), "--hub", str(tmp_path / "hub")]) == 0
    assert set(pl.read_ndjson(again)["dup_of"]) == {
        "released.jsonl#0",
        "released.jsonl#1",
        "released.jsonl#4",
    }


def test_cli_dedup_rejects_a_file_without_personas(tmp_path, capsys):
    src = tmp_path / "bad.parquet"
    pl.DataFrame({"text": ["x"]}).write_parquet(src)
    assert cli(["dedup", str(src), "--out", str(tmp_path / "o.parquet")]) == 2
    assert "no persona column" in capsys.readouterr().err


def test_on_s3_a_failing_state_read_is_retried_then_fails_the_growth_and_never_starts_over(
    s3, embedder, monkeypatch
):
    """The object store answers 503 to reads of the state: a blip is retried and the hub grows on its
    saved state; a lasting outage fails the growth and leaves the state as it was — never "no state"."""
    import obstore

    store = Lake(s3.url).files.child("hub_state")
    (_,), published = grow_days(store, [("d1", DAY1)], embedder)
    manifest = HubIndex.manifest(store)
    real_get = obstore.get
    outage = {"left": 2, "failed": 0}

    def flaky_get(backend, path, *args, **kwargs):
        if "hub_state/" in path and outage["left"]:
            outage["left"] -= 1
            outage["failed"] += 1
            raise RuntimeError(
                "Generic S3 error: Server returned non-2xx status code: 503 Service Unavailable"
            )
        return real_get(backend, path, *args, **kwargs)

    monkeypatch.setattr(obstore, "get", flaky_get)
    (day2,), published = grow_days(store, [("d2", DAY2)], embedder, published=published)
    assert outage["failed"] == 2 and day2.kept_total == 3 and day2.new_personas == 3
    outage["left"] = 10_000
    with pytest.raises(RuntimeError, match="503"):
        grow_days(store, [("d3", ["A beekeeper in Vermont."])], embedder, published=published)
    outage["left"] = 0
    after = HubIndex.manifest(store)
    assert [p["name"] for p in after["partitions"]] == ["d1", "d2"]
    assert after["chunks"][:1] == manifest["chunks"] and after["kept"] == 3


def test_a_shard_that_lands_after_a_higher_one_is_marked_in_arrival_order(tmp_path, embedder):
    """Shards of one day (``<day>.s<k>``) that arrive out of order: each is marked against what is
    kept when it arrives; the earlier-arriving shard's marks stand."""
    (s1, s0), _ = grow_days(tmp_path, [("2026-01-01.s01", DAY2), ("2026-01-01.s00", DAY1)], embedder)
    assert s0.late == ["2026-01-01.s00"] and s1.late == []
    marks = dict(zip(s0.hub["2026-01-01.s00"]["persona_id"], s0.hub["2026-01-01.s00"]["dup_of"], strict=True))
    assert marks["p-2026-01-01.s00-1"] == "p-2026-01-01.s01-0"  # the pianist was kept in shard 1
    assert s1.hub["2026-01-01.s01"]["dup_of"].is_null().all()


def test_hub_rebuild_re_marks_every_day_in_date_order_only_when_asked(tmp_path, embedder, capsys):
    lake = Lake(tmp_path / "lake")
    store = lake.files.child("hub_state")

    def publish(hub: dict[str, pl.DataFrame]) -> None:
        for day, rows in hub.items():
            lake.write("hub", rows, producer="persona_hub", partition=day)

    for day, texts in (("2026-01-02", DAY2), ("2026-01-01", DAY1)):  # the earlier day arrives late
        lake.write("personas", personas(day, texts), producer="text_personas", partition=day)
        grow_hub(
            personas(day, texts), store, embedder, DedupConfig(), lake.read("hub", partitions=[day]), publish
        )
    pianist = "p-2026-01-02-0"
    assert lake.read("hub", "persona_id = ?", [pianist])["dup_of"].item() is None  # kept: it came first

    assert cli(["hub", "rebuild", "--lake", str(lake.root)]) == 2  # never without --yes
    assert "--yes" in capsys.readouterr().err
    assert cli(["hub", "rebuild", "--yes", "--lake", str(lake.root)]) == 0
    assert lake.read("hub", "persona_id = ?", [pianist])["dup_of"].item() == "p-2026-01-01-1"  # date order
    manifest = HubIndex.manifest(store)
    assert manifest["rebuilds"] == 1 and [p["name"] for p in manifest["partitions"]] == [
        "2026-01-01",
        "2026-01-02",
    ]
    assert {k.split("-", 1)[1].rsplit(".", 1)[0] for k in store.list("chunks")} == set(manifest["chunks"])
    assert cli(["hub", "status", "--lake", str(lake.root)]) == 0
    assert "rebuilt 1 times" in capsys.readouterr().out


def test_a_state_saved_before_samples_gets_its_sample_from_its_chunks_once(tmp_path, embedder):
    old = HubIndex(DedupConfig(), embedder)
    old.add(["p-old-0", "p-old-1"], DAY1[:2])
    old.save(as_store(tmp_path), {"partitions": [{"name": "d0"}]})  # as an earlier release saved it
    assert read_sample(as_store(tmp_path), HubIndex.manifest(tmp_path)) is None
    grow_hub(
        personas("d1", ["A soil scientist studying no-till farming in Iowa."]),
        tmp_path,
        embedder,
        DedupConfig(),
    )
    sample = read_sample(as_store(tmp_path), HubIndex.manifest(tmp_path))
    assert sample["persona_id"].to_list() == ["p-d1-0", "p-old-0", "p-old-1"]
    stored = HubIndex.load(tmp_path, DedupConfig(), embedder)
    assert np.allclose(sample_vectors(sample), stored.vectors()[[2, 0, 1]])
