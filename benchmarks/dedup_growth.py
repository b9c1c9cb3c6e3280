"""Hub growth: the time to add a 10k-persona partition to hubs of 10k, 100k and 1M personas.

Each measurement is what a nightly run pays: embed the new partition with the real model, load the
hub's dedup state from disk, mark the partition against the hub and within itself, save the state.
Hub personas are synthetic texts with synthetic unit vectors (embedding a 1M hub with the real model
would take ~2 hours here). The model embeds only the new partition, so its time is measured once, on
the partition's texts, and added to each row; the index columns use synthetic vectors for the new
partition too, and are also compared on their own. The 10k hub is the baseline.

    .venv/bin/python benchmarks/dedup_growth.py [--sizes 10000 100000 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_personas import many

from personahub_dagster.core.hub.ann import planted_near_duplicates
from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.index import HubIndex


class SyntheticEmbedder:
    """Random unit vectors of the default model's width, for timing the index, not the model."""

    model_name = "synthetic-384"
    dimension = 384

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def encode(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dimension), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(directory: Path, size: int, config: DedupConfig) -> float:
    """A hub of ``size`` kept personas, saved (setup, not measured as growth)."""
    started = time.perf_counter()
    emb = SyntheticEmbedder(seed=size)
    hub = HubIndex(config, emb)
    texts = many(size, seed=size)
    for start in range(0, size, 200_000):
        chunk = texts[start : start + 200_000]
        hub._append([f"h{start + i}" for i in range(len(chunk))], chunk, emb.encode(chunk))
    hub.save(directory)
    return time.perf_counter() - started


def grow(directory: Path, batch: int, config: DedupConfig, nprobe: int | None = None) -> dict:
    """Add the partition; with ``nprobe`` the calibrated value is overridden and nothing is saved."""
    emb = SyntheticEmbedder(seed=1)
    texts = many(batch, seed=99)
    t0 = time.perf_counter()
    hub = HubIndex.load(directory, config, emb)
    if nprobe:
        hub._ann_nprobe = nprobe
    t1 = time.perf_counter()
    hub.add([f"n{i}" for i in range(batch)], texts)
    t2 = time.perf_counter()
    if not nprobe:
        hub.save(directory)
    t3 = time.perf_counter()
    return {
        "load": t1 - t0,
        "mark": t2 - t1,
        "save": t3 - t2,
        "total": t3 - t0,
        "ann": f"IVF-PQ fast scan, nprobe {hub._ann_nprobe}" if hub._ann is not None else "exact",
        "recall": planted_recall(hub),
    }


def planted_recall(hub: HubIndex, n: int = 2000) -> float:
    """Share of fresh near-duplicates (cosine 0.92 to a random hub vector, moved in a random
    direction) whose search returns that vector: what the approximate index gives up."""
    rng = np.random.default_rng(2024)
    pick = rng.choice(len(hub), n, replace=False)
    queries = planted_near_duplicates(np.asarray(hub.vectors()[pick]), 0.92, rng)
    return float((hub._search(queries)[1] == pick).mean())


def warm_up(config: DedupConfig) -> None:
    """Load the compiled kernels once (numba's cache), so no row pays for it."""
    hub = HubIndex(config, SyntheticEmbedder())
    hub.add([f"w{i}" for i in range(200)], many(200, seed=7))
    hub.add([f"x{i}" for i in range(200)], many(200, seed=8))


def embed_seconds(batch: int) -> float:
    """Seconds the real model (all-MiniLM-L6-v2, default backend) takes to embed the partition."""
    texts = many(batch, seed=99)
    model = Embedder()
    model.encode(texts[:64])  # load and warm up, not measured
    started = time.perf_counter()
    model.encode(texts)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    config = DedupConfig()
    warm_up(config)
    embed = embed_seconds(args.batch)
    print(f"  embedding {args.batch:,} personas: {embed:.1f} s", file=sys.stderr)
    rows = []
    for size in args.sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"hub{size}-"))
        try:
            setup = build(folder, size, config)
            fixed = grow(folder, args.batch, config, nprobe=16) if size > config.ann_min_size else None
            calibrated = grow(folder, args.batch, config)
            if fixed:  # the same growth with a fixed, uncalibrated nprobe; its save is the same write
                fixed["save"], fixed["total"] = calibrated["save"], fixed["total"] + calibrated["save"]
                rows.append((size, setup, fixed))
            rows.append((size, setup, calibrated))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"  hub {size:,}: built in {setup:.0f} s", file=sys.stderr)
    base = rows[0][2]["total"]
    print(f"\nAdding a {args.batch:,}-persona partition: embed (model) → load state → mark → save")
    print("(a row with nprobe 16 fixed is not saved; its save time is the calibrated row's)\n")
    print(
        "| hub personas | index | near-dup recall | embed s | load s | mark s | save s | index s "
        "| index vs 10k hub | total s | total vs 10k hub |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, _, r in rows:
        print(
            f"| {size:,} | {r['ann']} | {r['recall']:.3f} | {embed:.1f} | {r['load']:.2f} | "
            f"{r['mark']:.2f} | {r['save']:.2f} | "
            f"{r['total']:.2f} | {r['total'] / base:.1f}× | {embed + r['total']:.1f} | "
            f"{(embed + r['total']) / (embed + base):.2f}× |"
        )


if __name__ == "__main__":
    main()
