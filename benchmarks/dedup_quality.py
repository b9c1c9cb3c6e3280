"""Precision and recall of the whole dedup (MinHash, then embeddings) on a set with known near-duplicates.

2,000 clearly different base personas plus 1,000 near-duplicates of them, each made by one or two
edits a pipeline really produces: casing, punctuation, a dropped word, two swapped words, and
paraphrase-like substitutions ("who" → "that", "from" → "based in", "restores" → "repairs"). A flag is
correct when a near-duplicate is marked as a duplicate of its own base (or of another copy of it);
recall is the share of near-duplicates flagged. MinHash alone is the baseline, measured in the same run.

    .venv/bin/python benchmarks/dedup_quality.py [--bases 2000 --dups 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_personas import corpus

from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.hub.embedder import Embedder
from personahub_dagster.core.hub.index import HubIndex
from personahub_dagster.core.hub.marks import Marks


def score(dup_of: list[str | None], origin: list[int | None]) -> tuple[float, float, int, int]:
    """Precision and recall of the duplicate flags; a flag is right if it points into the same family."""
    family = [o if o is not None else i for i, o in enumerate(origin)]
    flagged = [i for i, d in enumerate(dup_of) if d is not None]
    right = sum(1 for i in flagged if origin[i] is not None and family[int(dup_of[i])] == family[i])
    positives = sum(1 for o in origin if o is not None)
    return right / len(flagged) if flagged else 1.0, right / positives, len(flagged), positives


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bases", type=int, default=2000)
    ap.add_argument("--dups", type=int, default=1000)
    args = ap.parse_args()
    texts, origin = corpus(args.bases, args.dups, seed=7)
    keys = [str(i) for i in range(len(texts))]
    cfg = DedupConfig()

    started = time.perf_counter()
    minhash_marks = Marks.empty(len(texts))
    HubIndex(cfg, Embedder()).mark_minhash(keys, texts, minhash_marks)
    t_minhash = time.perf_counter() - started

    started = time.perf_counter()
    full = HubIndex(cfg, Embedder()).add(keys, texts)
    t_full = time.perf_counter() - started

    print(
        f"\n{args.bases:,} distinct personas + {args.dups:,} near-duplicates; "
        f"Jaccard ≥ {cfg.minhash_threshold}, cosine ≥ {cfg.cosine_threshold} (all-MiniLM-L6-v2)\n"
    )
    print("| stages | precision | recall | flagged | near-duplicates | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, dup_of, secs in (
        ("MinHash only (baseline)", minhash_marks.dup_of, t_minhash),
        ("MinHash + embeddings", full["dup_of"].to_list(), t_full),
    ):
        p, r, flagged, positives = score(dup_of, origin)
        print(f"| {name} | {p:.3f} | {r:.3f} | {flagged:,} | {positives:,} | {secs:.1f} |")
    reasons = full.group_by("dup_reason").len().drop_nulls().sort("dup_reason").rows()
    print("\nflags by stage: " + ", ".join(f"{r}: {n}" for r, n in reasons))


if __name__ == "__main__":
    main()
