"""MinHash stage throughput: our HubIndex (rensa) against datasketch's MinHashLSH, same personas.

Both do the same job: word 1-grams, 128 permutations, Jaccard ≥ 0.9, LSH candidates verified by
estimated Jaccard, the earliest persona kept. datasketch runs the textbook loop (MinHash per document,
query, insert); ours hashes the batch in one rensa call and finds candidates with one LSH insert.

    .venv/bin/python benchmarks/dedup_minhash.py [--n 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from datasketch import MinHash, MinHashLSH
from synthetic_personas import many, near_duplicate

from personahub_dagster.core.dedup import (
    DedupConfig,
    HubIndex,
    Marks,
    band_keys,
    lsh_rows_per_band,
    signatures,
    tokenize,
)


def personas(n: int) -> list[str]:
    """90% varied personas, 10% near-duplicates of them (so the verification path is exercised)."""
    rng = random.Random(1)
    base = many(int(n * 0.9), seed=1)
    return base + [near_duplicate(rng.choice(base), rng) for _ in range(n - len(base))]


def ours(texts: list[str]) -> tuple[float, float, set[int]]:
    """Seconds to mark, seconds to also keep the survivors' signatures and band keys (the state a
    later partition is checked against; datasketch's ``insert`` does the same), and the duplicates."""
    keys = [str(i) for i in range(len(texts))]
    started = time.perf_counter()
    config = DedupConfig()
    hub = HubIndex(config, embedder=None)
    marks = Marks.empty(len(texts))
    survivors = hub.mark_minhash(keys, texts, marks)
    marked = time.perf_counter() - started
    band_keys(signatures([hub._batch_tokens[i] for i in survivors], config), hub.rows_per_band)
    return marked, time.perf_counter() - started, {i for i, d in enumerate(marks.dup_of) if d is not None}


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
    t_mark, t_ours, d_ours = ours(texts)
    t_ds, d_ds = datasketch(texts)
    agree = 1 - len(d_ours ^ d_ds) / len(texts)
    print(f"\nMinHash stage on {args.n:,} personas (128 permutations, Jaccard ≥ 0.9, same LSH banding)\n")
    print("| implementation | seconds | personas/s | duplicates found | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| datasketch MinHash + MinHashLSH | {t_ds:.2f} | {args.n / t_ds:,.0f} | {len(d_ds):,} | 1.0× |")
    for name, secs in (
        ("personahub HubIndex (rensa): marking", t_mark),
        ("personahub HubIndex: marking + keeping signatures", t_ours),
    ):
        print(f"| {name} | {secs:.2f} | {args.n / secs:,.0f} | {len(d_ours):,} | {t_ds / secs:.1f}× |")
    print(f"\nsame keep/duplicate decision for {agree:.2%} of personas")


if __name__ == "__main__":
    main()
