"""Verifiable instructions: constraints checked by code with the reference's semantics (IFEval's 25 ids and
a family of IFBench's out-of-domain ones), seeded draws that never ask the impossible, witnesses that prove
it, and the ground truth an RLVR trainer verifies against."""

from personahub_dagster.core.instructions.registry import (
    CONFLICTS,
    FAMILIES,
    KINDS,
    Constraint,
    Verdict,
    check_all,
    dataset_of,
    draw,
    ground_truth,
    kinds_of,
    witness,
)

__all__ = [
    "CONFLICTS",
    "FAMILIES",
    "KINDS",
    "Constraint",
    "Verdict",
    "check_all",
    "dataset_of",
    "draw",
    "ground_truth",
    "kinds_of",
    "witness",
]
