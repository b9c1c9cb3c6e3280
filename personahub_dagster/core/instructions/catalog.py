"""The registry as a Markdown table (docs/instructions.md holds it; a test keeps the two equal)."""

from __future__ import annotations

from personahub_dagster.core.instructions.registry import CONFLICTS, FAMILIES, KINDS, draw

_ORIGIN = {"ifeval": "IFEval (Zhou et al. 2023)", "ifbench": "IFBench (Pyatkin et al. 2025)"}


def catalog() -> str:
    """Per family: each instruction id, an example of what it asks, what to know, and what it is never
    drawn with."""
    lines = []
    for family in FAMILIES:
        kinds = [k for k in KINDS.values() if k.family == family]
        lines += [
            f"### `{family}` — {len(kinds)} instructions from {_ORIGIN[family]}",
            "",
            "| instruction id | asks, for example | checked | never drawn with |",
            "| --- | --- | --- | --- |",
        ]
        for kind in kinds:
            [example] = draw("catalog", 0, 1, "Plan a garden.", kinds=[kind.id])
            says = example.describe().replace("\n", " ").replace("|", "\\|")
            others = sorted(CONFLICTS[kind.id] - {kind.id})
            never = "everything else" if len(others) > 20 else ", ".join(f"`{o}`" for o in others) or "—"
            lines.append(f"| `{kind.id}` | {says} | {kind.why or 'as the reference'} | {never} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
