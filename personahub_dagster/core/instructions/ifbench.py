"""Out-of-domain constraints from IFBench (Pyatkin et al. 2025, allenai/IFBench): kinds a model trained on
IFEval's 25 has not seen, checked as IFBench's own checkers check them. Kept as a family of their own
(``families: [ifeval, ifbench]``) so a team can train on one and evaluate on the other.

Chosen from IFBench's 58 for what fits any persona's request and is checked by code alone: not the fixed
questions (Napoleon's battles, the capitals of Europe), nor the kinds that need NLTK's stop-word list or
part-of-speech tagger (data NLTK downloads)."""

from __future__ import annotations

import personahub_dagster.core.instructions.ifbench_counts as ifbench_counts
import personahub_dagster.core.instructions.ifbench_format as ifbench_format
from personahub_dagster.core.instructions.kind import Kind

KINDS: list[Kind] = [*ifbench_counts.KINDS, *ifbench_format.KINDS]
CONFLICTS: dict[str, set[str]] = {}
