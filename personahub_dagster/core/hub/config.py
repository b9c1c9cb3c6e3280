"""How the hub deduplicates: :class:`DedupConfig` (thresholds, permutations, when search turns
approximate) and the LSH banding a threshold needs; a saved state made with other settings is refused
(:class:`StateError`), never silently rebuilt."""

from __future__ import annotations

from dataclasses import dataclass


class StateError(RuntimeError):
    """The hub's saved state cannot be used as it is; the message says what to run."""


def lsh_rows_per_band(threshold: float, num_perm: int, min_recall: float = 0.995) -> int:
    """The widest band (fewest false candidates) that still catches a pair at ``threshold`` with
    probability ≥ ``min_recall``: P = 1 - (1 - t^r)^b, with b·r = num_perm."""
    best = 1
    for r in (d for d in range(1, num_perm + 1) if num_perm % d == 0):
        if 1 - (1 - threshold**r) ** (num_perm // r) >= min_recall:
            best = r
    return best


@dataclass(frozen=True)
class DedupConfig:
    minhash_threshold: float = 0.9  # estimated Jaccard of word 1-grams that marks a near-duplicate
    num_perm: int = 128  # MinHash permutations: the estimate's precision
    cosine_threshold: float = 0.9  # embedding similarity that marks a semantic duplicate
    seed: int = 42  # of the permutations: part of the hub's state, fixed for a hub's lifetime
    block_size: int = 4096  # personas embedded and searched at a time
    ann_min_size: int = 50_000  # kept personas above which the embedding index is approximate (IVF-PQ)
    ann_target_recall: float = 0.99  # share of planted near-duplicates the approximate search must find …
    ann_nprobe: int | None = None  # … by choosing the lists probed per query when trained (or fix it here)
