"""Night N costs what night 1 costs: six consecutive nights of the whole pipeline (a process each, the fake
provider answering), and a step that reads history fails the test. Then a backfill of an earlier day:
it is marked against the hub as it stands, and no published mark of a later day changes."""

from __future__ import annotations

import datetime

import polars as pl
import pytest

from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.lake.tables import Lake
from tests.support.fake_openai import FakeOpenAI
from tests.support.nights import fake_llm, night

START = datetime.date(2026, 3, 2)
NIGHTS = 6
TEXTS = 12
# What a step may read beyond night 2's, whatever the night: a few files of Delta bookkeeping
# (a checkpoint, a block of the call journal) and the rows of a day's size.
FILES_SLACK, ROWS_SLACK = 4, 200
# The repeat check of ingest opens each earlier day's text file (a semi-join on the id column):
# the one read that still grows with the days, by one file a day.
GROWS = {"raw_texts"}


def day(n: int) -> str:
    return (START + datetime.timedelta(days=n)).isoformat()


@pytest.mark.e2e
def test_a_late_night_reads_what_an_early_night_reads_and_a_backfill_changes_no_published_mark(tmp_path):
    with FakeOpenAI(fake_llm) as server:
        nights = [
            night(tmp_path, day(n), n, TEXTS, server.base_url, personas_per_type=2) for n in range(NIGHTS)
        ]
        lake = Lake(tmp_path / "lake")
        before = lake.read("hub").sort("persona_id")
        manifest = HubIndex.manifest(lake.files.child("hub_state"))
        backfill = night(tmp_path, day(-1), NIGHTS, TEXTS, server.base_url, personas_per_type=2)

    second, last = nights[1]["reads"], nights[-1]["reads"]
    assert set(second) == set(last) and "persona_hub" in last and "report" in last

    # A day's own shape (whether it made a conversation, a preference pair…) changes what a step opens by
    # a few files either way, so a late night is held to the most any of the first three nights read.
    def most(step: str) -> dict[str, int]:
        seen = [n["reads"][step] for n in nights[:3] if step in n["reads"]]
        return {k: max(r[k] for r in seen) for k in ("files", "rows")}

    report = {step: (second[step] if step in GROWS else most(step), last[step]) for step in sorted(last)}
    print(
        "\nstep: nights 1–3 reads (at most) → night 6 reads\n"
        + "\n".join(f"  {k}: {a} → {b}" for k, (a, b) in report.items())
    )
    for step, (early, late) in report.items():
        if step in GROWS:
            assert late["files"] <= early["files"] + NIGHTS, step
            continue
        assert late["files"] <= early["files"] + FILES_SLACK, (
            f"{step} opens more files each night: {early} → {late}"
        )
        assert late["rows"] <= early["rows"] + ROWS_SLACK, (
            f"{step} reads more rows each night: {early} → {late}"
        )
    assert nights[-1]["hub"]["hub_personas"] > nights[1]["hub"]["hub_personas"] > 0  # the hub did grow

    # the backfill: one more day's marks, every published mark as it was, the state grown (not rebuilt)
    after = lake.read("hub").sort("persona_id")
    assert after.filter(pl.col("partition") != day(-1)).equals(before)
    marked = after.filter(pl.col("partition") == day(-1))
    assert marked.height > 0 and backfill["reads"]["persona_hub"]["files"] <= second["persona_hub"]["files"]
    grown = HubIndex.manifest(lake.files.child("hub_state"))
    assert grown["chunks"][: len(manifest["chunks"])] == manifest["chunks"]
    assert [p["name"] for p in grown["partitions"]][-1] == day(-1) and grown.get("rebuilds", 0) == 0
