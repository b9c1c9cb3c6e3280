"""Hub growth on Ray against hub growth in one process: add a partition to a saved hub, the same state
searched by the in-process index (the baseline) and by shard actors on a local Ray cluster (a one-node
``ray start --head`` with this machine's two CPUs): one worker holding the whole hub, then two
workers holding half each.

Hub personas are synthetic texts with synthetic unit vectors (as in ``dedup_growth.py``); the
partition has 1% planted near-duplicates of hub personas (a hub vector moved to cosine 0.92) to
measure recall, and the model's embedding time is measured once on real texts and reported apart.
Rows:

* exact search (``ann_min_size`` above the hub) on a smaller hub: in-process vs Ray — the marks must
  be identical;
* approximate search (the default above 50k kept personas) on the large hub: the in-process IVF-PQ
  index vs one IVF-PQ index per shard (built on a shard's first run and kept in the store: each build
  is its own row), with the marks' agreement and the planted near-duplicates' recall.

Then the cost model for a billion personas from these measurements.

    .venv/bin/python benchmarks/hub_distributed.py [--hub 1000000] [--exact-hub 200000]
                                                   [--batch 100000] [--shard-rows 500000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))

from synthetic_personas import many  # noqa: E402

from personahub_dagster.core.hub.ann import planted_near_duplicates  # noqa: E402
from personahub_dagster.core.hub.config import DedupConfig  # noqa: E402
from personahub_dagster.core.hub.embedder import Embedder  # noqa: E402
from personahub_dagster.core.hub.index import HubIndex  # noqa: E402
from personahub_dagster.core.hub.on_ray import RayEngine  # noqa: E402
from personahub_dagster.core.storage.store import as_store  # noqa: E402
from tests.support.servers import RayHead  # noqa: E402
from tests.support.vectors import TableEmbedder, unit_vectors  # noqa: E402

CHUNKS = 8  # the saved hub is 8 chunks, as if grown over 8 nights


def build(folder: Path, size: int, config: DedupConfig, emb: TableEmbedder) -> tuple[float, np.ndarray]:
    """A saved hub of ``size`` kept personas in ``CHUNKS`` chunks (setup, not measured as growth)."""
    started = time.perf_counter()
    rng = np.random.default_rng(size)
    texts, vecs = many(size, seed=size), unit_vectors(rng, size)
    hub = HubIndex(config, emb)
    store = as_store(folder)
    chunk = -(-size // CHUNKS)
    for start in range(0, size, chunk):
        part = slice(start, min(size, start + chunk))
        hub._append([f"h{i}" for i in range(part.start, part.stop)], texts[part], vecs[part])
        hub.save(store)
    return time.perf_counter() - started, vecs


def partition(
    batch: int, hub_vecs: np.ndarray, emb: TableEmbedder, seed: int
) -> tuple[list[str], list[str], np.ndarray]:
    """``batch`` fresh personas, 1% of them a hub vector moved to cosine 0.92 (which ones: returned)."""
    rng = np.random.default_rng(seed)
    texts = [f"{t} (day {seed})" for t in many(batch, seed=seed)]
    vecs = unit_vectors(rng, batch)
    planted = rng.choice(len(hub_vecs), batch // 100, replace=False)
    vecs[: len(planted)] = planted_near_duplicates(hub_vecs[planted], 0.92, rng)
    emb.table.update(zip(texts, vecs, strict=True))
    return [f"d{i}" for i in range(batch)], texts, planted


def prepare(folder: Path, size: int, batch: int, config: DedupConfig, seed: int):
    """A saved hub of ``size`` and a partition of ``batch`` with its planted near-duplicates."""
    emb = TableEmbedder()
    built, hub_vecs = build(folder, size, config, emb)
    print(f"  hub {size:,}: built in {built:.0f} s", file=sys.stderr)
    keys, texts, planted = partition(batch, hub_vecs, emb, seed=seed)
    return emb, keys, texts, planted


def grow(folder: Path, config: DedupConfig, emb, keys, texts, engine: RayEngine | None) -> dict:
    """Load the state and mark the partition (not saved: every row starts from the same state); with
    ``engine`` the saved hub is searched by shard actors on the cluster this process is connected to."""
    t0 = time.perf_counter()
    state = HubIndex.load(folder, config, emb, engine.shards if engine else None)
    t1 = time.perf_counter()
    try:
        marks = state.add(keys, texts)
    finally:
        if state.remote is not None:
            state.remote.close()
    t2 = time.perf_counter()
    search = state.remote.search_s if state.remote is not None else None
    return {"load": t1 - t0, "mark": t2 - t1, "total": t2 - t0, "marks": marks, "search": search}


def recall(marks: pl.DataFrame, planted: np.ndarray) -> float:
    head = marks.head(len(planted))
    return float((head["dup_of"] == pl.Series([f"h{i}" for i in planted])).mean())


HEADER = (
    "| engine | load s | mark s | of which shards s | total s | × one process | planted recall "
    "| marks as one process |\n|---|---:|---:|---:|---:|---:|---:|---:|"
)


def row(name: str, r: dict, base: dict | None, planted: np.ndarray) -> str:
    same = "–" if base is None else f"{(r['marks']['dup_of'] == base['marks']['dup_of']).mean():.2%}"
    speed = "1.00×" if base is None else f"{base['total'] / r['total']:.2f}×"
    shards = "–" if r["search"] is None else f"{r['search']:.1f}"
    return (
        f"| {name} | {r['load']:.1f} | {r['mark']:.1f} | {shards} | {r['total']:.1f} | {speed} | "
        f"{recall(r['marks'], planted):.3f} | {same} |"
    )


def embed_rate() -> float:
    """Personas per second the real model (all-MiniLM-L6-v2, default backend) embeds here."""
    texts = many(2_000, seed=5)
    model = Embedder()
    model.encode(texts[:64])
    started = time.perf_counter()
    model.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hub", type=int, default=1_000_000)
    ap.add_argument("--exact-hub", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--exact-batch", type=int, default=10_000)
    args = ap.parse_args()
    lines: list[str] = []
    results: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="hub-distributed-"))
    try:
        with RayHead(cpus=2) as head:
            import ray

            ray.init(address=head.address, log_to_driver=False)
            # exact: marks must be identical
            exact = DedupConfig(ann_min_size=10**12)
            emb, keys, texts, planted = prepare(tmp / "exact", args.exact_hub, args.exact_batch, exact, 1)
            base = grow(tmp / "exact", exact, emb, keys, texts, None)
            lines.append(
                f"\n**Exact search** — a {args.exact_batch:,}-persona partition against a "
                f"{args.exact_hub:,}-persona hub:\n"
            )
            lines += [HEADER, row("one process (exact)", base, None, planted)]
            for workers in (1, 2):
                engine = RayEngine(head.address, shard_rows=-(-args.exact_hub // workers))
                r = grow(tmp / "exact", exact, emb, keys, texts, engine)
                assert r["marks"].equals(base["marks"]), "the Ray engine's exact marks differ"
                label = f"Ray, {workers} shard worker{'s' * (workers > 1)} (exact)"
                lines.append(row(label, r, base, planted))

            # approximate, at the large size
            approx = DedupConfig()
            emb, keys, texts, planted = prepare(tmp / "large", args.hub, args.batch, approx, 2)
            base = results["local"] = grow(tmp / "large", approx, emb, keys, texts, None)
            title = f"a {args.batch:,}-persona partition against a {args.hub:,}-persona hub"
            lines += [
                f"\n**Approximate search** — {title} (IVF-PQ, calibrated for 99% recall):\n",
                HEADER,
                row("one process (the hub's IVF-PQ index)", base, None, planted),
            ]
            for workers in (1, 2):
                engine = RayEngine(head.address, shard_rows=-(-args.hub // workers))
                name = f"Ray, {workers} shard worker{'s' * (workers > 1)}"
                first = grow(tmp / "large", approx, emb, keys, texts, engine)  # shards build their index
                results[workers] = grow(tmp / "large", approx, emb, keys, texts, engine)
                lines.append(row(f"{name}, first run (builds the shard indexes)", first, base, planted))
                lines.append(row(f"{name}, indexes kept", results[workers], base, planted))
            ray.shutdown()
        rate = embed_rate()
        lines.append(
            f"\nThe model embeds {rate:,.0f} personas/s here (all-MiniLM-L6-v2, 2 cores): "
            f"{args.batch / rate:,.0f} s for the partition, on top of every row (or split over embedder "
            "actors)."
        )
        lines.append(cost_model(results[2], args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))


def cost_model(measured: dict, args: argparse.Namespace) -> str:
    """A billion personas from the measured shard search: CPU-hours, bytes, the serial step."""
    hub, day, shard_rows = 1_000_000_000, 10_000_000, 2_000_000
    measured_rows = args.hub // 2
    cpu_s = measured["search"]  # two shards answered in parallel on two CPUs: one shard's CPU-seconds
    # an IVF list holds ~√n/4 vectors and a query probes a fixed number of lists: a query's cost grows
    # with √(shard rows); the partition's with its size
    scale = (shard_rows / measured_rows) ** 0.5 * (day / args.batch)
    cpu_hours = hub / shard_rows * cpu_s * scale / 3600
    stored = 384 * 4 + 128 * 4 + 16 * 8 + 24 + 60  # vector, signature, band keys, IVF-PQ code, id (bytes)
    return (
        f"\n**A billion personas** (a model from the 2-CPU row, not a measurement): a day of {day:,} new "
        f"personas against a {hub:,}-persona hub in {hub // shard_rows} shards of {shard_rows:,}. One "
        f"measured shard spent {cpu_s:.1f} CPU-s on {args.batch:,} queries over {measured_rows:,} rows; × "
        f"√{shard_rows // measured_rows} (IVF lists grow with √n) × {day // args.batch} (partition size) × "
        f"{hub // shard_rows} shards ≈ **{cpu_hours:,.0f} CPU-hours per night** for the search — "
        f"{cpu_hours / (100 * 16):.1f} h on 100 nodes of 16 cores. Stored state ≈ {stored} B per persona = "
        f"**{hub * stored / 1e12:.1f} TB**, read once per night by the shard actors "
        f"({shard_rows * stored / 1e9:.1f} GB each; shard indexes are kept, so only the newest shard is "
        "re-indexed). The serial step stays "
        f"on the driver: the day's own earliest-wins over its {day:,} personas and the hub's id list "
        f"({hub * 22 / 1e9:.0f} GB at 22 B an id)."
    )


if __name__ == "__main__":
    main()
