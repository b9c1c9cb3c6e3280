"""MinHash stage throughput: our HubIndex against datasketch's MinHashLSH and rensa, same personas.

All do the same job: word 1-grams, 128 permutations, Jaccard ≥ 0.9, LSH candidates verified by
estimated Jaccard, the earliest persona kept — and keep the kept personas' signatures and band keys,
the state a later partition is checked against (datasketch's ``insert`` does the same). datasketch
runs the textbook loop (MinHash per document, query, insert); rensa hashes the batch in Rust and
dedups with its LSH deduplicator, then exports the kept signatures; ours hashes into numpy with a
compiled kernel and runs a compiled earliest-wins loop. Compilation is cached and warmed up first.

    .venv/bin/python benchmarks/dedup_minhash.py [--n 100000]
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from datasketch import MinHash, MinHashLSH
from rensa import RMinHash, RMinHashDeduplicator
from synthetic_personas import many, near_duplicate

from personahub_dagster.core.hub.config import DedupConfig, lsh_rows_per_band
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.marks import Marks
from personahub_dagster.core.hub.minhash import band_keys, tokenize


def personas(n: int) -> list[str]:
    """90% varied personas, 10% near-duplicates of them (so the verification path is exercised)."""
    rng = random.Random(1)
    base = many(int(n * 0.9), seed=1)
    return base + [near_duplicate(rng.choice(base), rng) for _ in range(n - len(base))]


def ours(texts: list[str]) -> tuple[float, float, set[int], np.ndarray]:
    """Seconds to mark, seconds to mark and keep the survivors' signatures and band keys, duplicates,
    and the signatures (for the brute-force check)."""
    keys = [str(i) for i in range(len(texts))]
    HubIndex(DedupConfig(), embedder=None).mark_minhash(keys[:100], texts[:100], Marks.empty(100))  # warm
    started = time.perf_counter()
    hub = HubIndex(DedupConfig(), embedder=None)
    marks = Marks.empty(len(texts))
    survivors = hub.mark_minhash(keys, texts, marks)
    marked = time.perf_counter() - started
    kept = np.ascontiguousarray(hub._batch_sigs[survivors])
    band_keys(kept, hub.rows_per_band)
    dups = {i for i, d in enumerate(marks.dup_of) if d is not None}
    return marked, time.perf_counter() - started, dups, hub._batch_sigs


def missed_by_banding(sigs: np.ndarray, dups: set[int], sample: int = 2000) -> int:
    """Brute force over the kept set: how many of the last ``sample`` kept personas (where the
    near-duplicates are) have an earlier kept one at estimated Jaccard ≥ 0.9 — pairs the LSH bands
    never proposed."""
    kept = np.array([i for i in range(len(sigs)) if i not in dups])
    missed = 0
    for i in kept[-sample:]:
        earlier = sigs[kept[kept < i]]
        missed += int((earlier == sigs[i]).mean(axis=1).max(initial=0.0) >= DedupConfig().minhash_threshold)
    return missed


def rensa(texts: list[str]) -> tuple[float, float, set[int]]:
    """The same job with rensa: RMinHash per text, its LSH deduplicator (earliest wins, candidates
    verified), then the kept signatures exported to numpy (``to_rows``: its only export)."""
    cfg = DedupConfig()
    r = lsh_rows_per_band(cfg.minhash_threshold, cfg.num_perm)
    started = time.perf_counter()
    tokens = tokenize(texts)
    mh = RMinHash.from_token_sets(tokens, num_perm=cfg.num_perm, seed=cfg.seed)
    dedup = RMinHashDeduplicator(cfg.minhash_threshold, cfg.num_perm, True, cfg.num_perm // r)
    added = dedup.add_pairs([(str(i), m) for i, m in enumerate(mh)])
    marked = time.perf_counter() - started
    kept = [tokens[i] for i, ok in enumerate(added) if ok]
    rows = RMinHash.digest_matrix_from_token_sets(kept, num_perm=cfg.num_perm, seed=cfg.seed).to_rows()
    flat = np.fromiter(itertools.chain.from_iterable(rows), np.uint32, count=len(rows) * cfg.num_perm)
    band_keys(flat.reshape(len(rows), cfg.num_perm), r)
    return marked, time.perf_counter() - started, {i for i, ok in enumerate(added) if not ok}


def datasketch(texts: list[str]) -> tuple[float, set[int]]:
    cfg = DedupConfig()
    r = lsh_rows_per_band(cfg.minhash_threshold, cfg.num_perm)
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.num_perm // r, r))
    kept: dict[int, MinHash] = {}
    dups = set()
    for i, tokens in enumerate(tokenize(texts)):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([t.encode() for t in set(tokens)])
        if any(m.jaccard(kept[j]) >= cfg.minhash_threshold for j in lsh.query(m)):
            dups.add(i)
        else:
            lsh.insert(i, m)
            kept[i] = m
    return time.perf_counter() - started, dups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    texts = personas(args.n)
    t_mark, t_ours, d_ours, sigs = ours(texts)
    r_mark, t_rensa, d_rensa = rensa(texts)
    t_ds, d_ds = datasketch(texts)
    print(f"\nMinHash stage on {args.n:,} personas (128 permutations, Jaccard ≥ 0.9, same LSH banding)\n")
    print("| implementation | marking s | + keeping signatures s | personas/s | duplicates | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, mark, total, dups in (
        ("datasketch MinHash + MinHashLSH (baseline)", t_ds, t_ds, d_ds),
        ("rensa RMinHash + RMinHashDeduplicator", r_mark, t_rensa, d_rensa),
        ("personahub HubIndex (compiled kernels)", t_mark, t_ours, d_ours),
    ):
        print(
            f"| {name} | {mark:.2f} | {total:.2f} | {args.n / total:,.0f} | {len(dups):,} "
            f"| {t_ds / total:.1f}× |"
        )
    missed = missed_by_banding(sigs, d_ours)
    print(f"\npersonahub: last 2,000 kept personas with a kept ≥ 0.9 match the banding missed: {missed}")
    for name, dups in (("rensa", d_rensa), ("personahub", d_ours)):
        print(f"\n{name}: same keep/duplicate decision as datasketch for {1 - len(dups ^ d_ds) / args.n:.2%}")


if __name__ == "__main__":
    main()
