"""Two-stage dedup with the real packaged embedder: MinHash for near-copies, embeddings for rewordings;
incremental state saved in and loaded from the lake."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from personahub_dagster.core.hub.ann import planted_near_duplicates
from personahub_dagster.core.hub.config import DedupConfig, lsh_rows_per_band
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.index import HubIndex, dedup_frame
from personahub_dagster.core.storage.store import ConcurrentUpdate, as_store

PERSONAS = [
    ("p1", "A pediatric nurse who works night shifts in a busy children's hospital."),
    ("p2", "A pediatric nurse who works night shifts in a busy children's hospital!"),  # punctuation only
    ("p3", "A jazz pianist who teaches harmony to adult beginners in Chicago."),
    ("p4", "A children's hospital nurse who works the night shift on a busy pediatric ward."),  # reworded p1
    ("p5", "A soil scientist studying no-till farming and water retention in Iowa."),
    ("p6", "A Jazz Pianist who teaches harmony to adult beginners in Chicago"),  # casing of p3
    ("p7", "A beekeeper who sells honey and beeswax candles at a weekly farmers' market."),
    ("p8", "A beekeeper who sells honey and beeswax candles at the weekly farmers market."),  # word swap
]
KEYS = [k for k, _ in PERSONAS]
TEXTS = [t for _, t in PERSONAS]
EXPECTED = {
    "p2": ("p1", "minhash"),
    "p6": ("p3", "minhash"),
    "p4": ("p1", "embedding"),
    "p8": ("p7", "embedding"),
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def marks_of(df: pl.DataFrame) -> dict:
    return {r["key"]: (r["dup_of"], r["dup_reason"]) for r in df.iter_rows(named=True) if r["dup_of"]}


def test_embedder_gives_unit_vectors(embedder):
    v = embedder.encode(["a nurse", "a pianist"])
    assert v.shape == (2, 384) and v.dtype.name == "float32"
    assert abs(float((v * v).sum(axis=1).max()) - 1.0) < 1e-4
    assert embedder.encode([]).shape == (0, 384)


def test_near_copies_and_rewordings_are_marked_not_dropped(embedder):
    df = pl.DataFrame({"persona_id": KEYS, "persona": TEXTS})
    out = dedup_frame(df, embedder)
    assert out.height == len(PERSONAS)
    assert {
        r["persona_id"]: (r["dup_of"], r["dup_reason"]) for r in out.iter_rows(named=True) if r["dup_of"]
    } == EXPECTED
    assert out.filter(pl.col("dup_of").is_not_null())["similarity"].min() >= 0.9


def test_the_cosine_threshold_is_a_knob(embedder):
    strict = HubIndex(DedupConfig(cosine_threshold=0.999), embedder).add(KEYS, TEXTS)
    assert "embedding" not in set(strict["dup_reason"].drop_nulls())


def test_growing_in_batches_equals_one_batch(embedder, tmp_path):
    whole = HubIndex(DedupConfig(block_size=2), embedder).add(KEYS, TEXTS)
    grown = HubIndex(DedupConfig(block_size=2), embedder)
    parts = [grown.add(KEYS[:3], TEXTS[:3])]
    grown.save(tmp_path / "state")  # and across processes: save, load, continue
    reloaded = HubIndex.load(tmp_path / "state", DedupConfig(block_size=2), embedder)
    assert reloaded.ids == grown.ids
    parts.append(reloaded.add(KEYS[3:], TEXTS[3:]))
    assert pl.concat(parts).drop("similarity").equals(whole.drop("similarity"))
    reloaded.save(tmp_path / "state")
    final = HubIndex.load(tmp_path / "state", DedupConfig(block_size=2), embedder)
    assert final.ids == ["p1", "p3", "p5", "p7"] and final.vectors().shape == (4, 384)


def test_a_new_partition_is_checked_against_the_whole_hub(embedder, tmp_path):
    hub = HubIndex(DedupConfig(), embedder)
    hub.add(KEYS, TEXTS)
    hub.save(tmp_path)
    again = HubIndex.load(tmp_path, DedupConfig(), embedder)
    new = again.add(
        ["n1", "n2", "n3"], [TEXTS[0].upper(), TEXTS[3], "A glassblower who restores church windows."]
    )
    # n2 repeats p4, which was itself only a rewording of p1: it is checked against kept personas
    assert marks_of(new) == {"n1": ("p1", "minhash"), "n2": ("p1", "embedding")}
    assert again.ids[-1] == "n3"


def test_state_from_another_config_or_model_is_not_reused(embedder, tmp_path):
    HubIndex(DedupConfig(), embedder).save(tmp_path)
    assert HubIndex.load(tmp_path, DedupConfig(), embedder) is not None
    assert HubIndex.load(tmp_path, DedupConfig(cosine_threshold=0.8), embedder) is None
    assert HubIndex.load(tmp_path / "missing", DedupConfig(), embedder) is None


def test_state_hashed_by_another_minhash_algorithm_is_not_reused(embedder, tmp_path):
    """Signatures from another hashing would never match new ones: such a state must be rebuilt."""
    HubIndex(DedupConfig(), embedder).save(tmp_path)
    manifest_path = tmp_path / (tmp_path / "CURRENT").read_text().strip() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["minhash"] = "rensa-0.5"
    manifest_path.write_text(json.dumps(manifest))
    assert HubIndex.load(tmp_path, DedupConfig(), embedder) is None


JOBS = [
    "baker", "judge", "pilot", "welder", "chemist", "librarian", "farmer", "actuary", "glazier",
    "surveyor", "midwife", "geologist", "translator", "plumber", "cartographer", "violinist",
    "paramedic", "beekeeper", "archivist", "stonemason", "tax lawyer", "zookeeper", "locksmith",
]  # fmt: skip
PLACES = [
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Quito",
    "Tromso",
    "Hobart",
    "Tbilisi",
    "Fresno",
    "Gdansk",
    "Recife",
    "Cusco",
]
PASTIMES = [
    "collects vinyl records", "breeds racing pigeons", "restores sailboats", "writes crossword puzzles",
    "forages wild mushrooms", "teaches chess to teenagers", "builds ship models", "volunteers at a hospice",
    "runs ultramarathons", "brews sour beer", "studies medieval law", "photographs thunderstorms",
    "keeps tropical fish", "repairs antique clocks", "plays competitive bridge",
    "knits sweaters for shelters", "trains sheepdogs", "codes retro video games", "sings in a gospel choir",
]  # fmt: skip


def _fillers(n: int) -> list[str]:
    """``n`` different personas: 23 jobs × 11 places × 19 pastimes, each next one differing in all three."""
    return [f"A {JOBS[i % 23]} in {PLACES[i % 11]} who {PASTIMES[i % 19]}." for i in range(n)]


def test_the_approximate_index_takes_over_above_its_size(embedder, tmp_path):
    cfg = DedupConfig(ann_min_size=1000)
    hub = HubIndex(cfg, embedder)
    assert marks_of(hub.add(KEYS, TEXTS)) == EXPECTED
    assert hub._ann is None  # 4 kept: not above the size yet
    fillers = _fillers(1100)
    hub.add([f"f{i}" for i in range(len(fillers))], fillers)
    assert len(hub) > 1000 and hub._ann is not None and hub._ann.ntotal == len(hub)
    hub.save(tmp_path)
    loaded = HubIndex.load(tmp_path, cfg, embedder)
    assert loaded._ann.ntotal == len(hub) and loaded._ann_nprobe == hub._ann_nprobe
    assert marks_of(loaded.add(["z"], [TEXTS[0].lower()])) == {"z": ("p1", "minhash")}
    reworded = "A nurse in a busy children's hospital who works the night shift on the pediatric ward."
    out = loaded.add(["y"], [reworded])
    assert marks_of(out)["y"] == ("p1", "embedding")
    # the approximate search re-ranks exactly: the similarity is the true cosine
    exact = (embedder.encode([reworded]) @ embedder.encode([TEXTS[0]]).T).item()
    assert abs(out["similarity"][0] - exact) < 1e-3


class RandomVectors:
    """Unit vectors without cluster structure: the hardest case for an IVF index."""

    model_name = "random-64"
    dimension = 64

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def encode(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dimension), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_approximate_index_probes_enough_lists_to_find_near_duplicates(tmp_path):
    n = 20_000
    hub = HubIndex(DedupConfig(ann_min_size=1000), RandomVectors())
    hub.add([f"h{i}" for i in range(n)], [f"persona number {i}" for i in range(n)])
    assert hub._ann is not None and hub._ann_nprobe > 1  # random vectors need more than one list
    # fresh near-duplicates (not the ones it was calibrated on) are found at the promised rate
    rng = np.random.default_rng(123)
    pick = rng.choice(n, 2000, replace=False)
    queries = planted_near_duplicates(hub.vectors()[pick], 0.92, rng)
    hub._ann.nprobe = hub._ann_nprobe
    _, idx = hub._ann.search(queries, 1)
    assert (idx[:, 0] == pick).mean() >= 0.97
    hub._ann.nprobe = 1
    assert (hub._ann.search(queries, 1)[1][:, 0] == pick).mean() < 0.9  # one list would miss many
    hub.save(tmp_path)
    assert HubIndex.load(tmp_path, hub.config, hub.embedder)._ann_nprobe == hub._ann_nprobe
    fixed = HubIndex(DedupConfig(ann_min_size=1000, ann_nprobe=3), RandomVectors())
    fixed.add([f"h{i}" for i in range(2000)], [f"persona number {i}" for i in range(2000)])
    assert fixed._ann_nprobe == 3


def test_lsh_banding_for_the_paper_threshold():
    r = lsh_rows_per_band(0.9, 128)
    assert r == 8  # 16 bands of 8 rows: a 0.9-Jaccard pair is a candidate with p > 0.999
    assert 1 - (1 - 0.9**r) ** (128 // r) > 0.995


def test_dup_of_always_names_a_kept_persona(embedder):
    hub = HubIndex(DedupConfig(), embedder)
    hub.add(["h"], [TEXTS[3]])  # the reworded nurse is in the hub first
    # x1 rewords the hub's nurse (an embedding duplicate); x2 copies x1 (a MinHash duplicate of x1)
    out = hub.add(["x1", "x2"], [TEXTS[0], TEXTS[1]])
    assert marks_of(out) == {"x1": ("h", "embedding"), "x2": ("h", "minhash")}
    assert hub.ids == ["h"]


def test_ids_may_repeat_between_hub_and_batch(embedder):
    hub = HubIndex(DedupConfig(), embedder)
    hub.add(["0", "1"], [TEXTS[0], TEXTS[2]])
    out = hub.add(["0", "1"], [TEXTS[1], TEXTS[4]])  # same names, other personas: no confusion, no loop
    assert marks_of(out) == {"0": ("0", "minhash")}


def test_of_two_runs_that_grew_one_state_only_the_first_commits(embedder, where):
    """Compare-and-swap on CURRENT (a file lock locally, a conditional PUT on S3): the second writer
    gets ConcurrentUpdate and leaves nothing referenced; growing again from the winner works."""
    store = as_store(where).child("hub_state")
    base = HubIndex(DedupConfig(), embedder)
    base.add(["a"], ["A retired welder from Oslo who restores vintage motorcycles."])
    base.save(store)
    first = HubIndex.load(store, DedupConfig(), embedder)
    second = HubIndex.load(store, DedupConfig(), embedder)
    first.add(["b"], ["A curious chemist from Lima who breeds tropical fish."])
    second.add(["c"], ["A shy pilot from Nairobi who coaches a youth rugby team."])
    first.save(store)
    keys = store.list()
    with pytest.raises(ConcurrentUpdate):
        second.save(store)
    assert store.list() == keys  # the loser's chunks and version folder were removed
    assert HubIndex.load(store, DedupConfig(), embedder).ids == ["a", "b"]
    again = HubIndex.load(store, DedupConfig(), embedder)
    again.add(["c"], ["A shy pilot from Nairobi who coaches a youth rugby team."])
    again.save(store)
    again.add(["d"], ["A methodical baker from Lisbon who grows heirloom tomatoes."])
    again.save(store)  # a second save by the same state: CURRENT's version was kept from the first
    assert HubIndex.load(store, DedupConfig(), embedder).ids == ["a", "b", "c", "d"]
    assert len({k.split("/")[0] for k in store.list() if k.startswith("v-")}) <= 2
