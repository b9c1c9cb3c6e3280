"""A dataset to publish: Parquet shards per data type in the layout the Hugging Face ``datasets`` library
reads, and a dataset card (``README.md`` with its YAML header) that says what made the data and from what.

The card is written from the lake alone — the rows exported, the texts they came from and their
licences, the rejects by stage and reason, the models and prompting modes — so a published dataset
always matches its card. ``datasets.load_dataset(folder, config)`` (or ``load_dataset("parquet",
data_files=…)``) reads the folder offline. This reads every day asked for: it is an on-demand command,
never a nightly step.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from personahub_dagster.core.lake.export import (
    export_conversations,
    export_frame,
    export_pairs,
    rlvr_frame,
    sft_frame,
)
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.storage.store import atomic_write

SHARD_ROWS = 100_000
VERIFIABLE = "verifiable_instruction"
COLUMNS_EXPLAINED = {
    "input persona": "the persona the row was written for (the public release's column)",
    "synthesized text": "the generated text (the public release's column)",
    "prompt / chosen / rejected": "a preference pair in TRL's DPO format",
    "messages": "a conversation as a list of {role, content}, in turn order",
    "prompt": "what the row answers: the request asked (or the synthesis prompt)",
    "ground_truth / dataset": "RLVR: the instruction ids and kwargs IFEval's or IFBench's checkers verify",
    "row_id": "this row's id: `personahub lineage ROW_ID` walks it back to its source text",
    "persona_id / parent_persona_id": "the persona, and the one it was derived from (Persona-to-Persona)",
    "source_text_id": "the web text the persona chain started from",
    "license / source_url": "that text's licence (SPDX-style; `unknown` when nothing said) and URL",
    "prompting_mode": "zero_shot, few_shot or persona_few_shot (Persona Hub §4)",
    "constraints": "the template slots, or a verifiable instruction's checkable constraints",
    "model": "the model that wrote the row",
}


@dataclass
class Published:
    folder: Path
    configs: dict[str, int] = field(default_factory=dict)  # config → rows
    licenses: dict[str, int] = field(default_factory=dict)


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "n>1M"


def _write_shards(frame: pl.DataFrame, folder: Path) -> None:
    n = max(1, -(-frame.height // SHARD_ROWS))
    for i in range(n):
        part = frame.slice(i * SHARD_ROWS, SHARD_ROWS)
        atomic_write(folder / f"data-{i:05d}-of-{n:05d}.parquet", lambda fh, p=part: p.write_parquet(fh))


def publish(
    lake: Lake,
    out: str | Path,
    releases: dict[str, str],
    partitions: Sequence[str] | None = None,
    licenses: Collection[str] | None = None,
    name: str = "PersonaHub synthetic data",
) -> Published:
    """Write every data type in ``releases`` (data type → config name), the preference pairs and the
    conversations to ``out/<config>/`` as Parquet shards, and the card to ``out/README.md``."""
    folder = Path(out)
    done = Published(folder)
    frames: dict[str, pl.DataFrame] = {}
    for data_type, config in releases.items():
        frames[config] = export_frame(lake, data_type, partitions=partitions, licenses=licenses)
        if data_type == VERIFIABLE and frames[config].height:  # the same rows as a trainer takes them
            frames[f"{config}_rlvr"] = rlvr_frame(frames[config])
            frames[f"{config}_sft"] = sft_frame(frames[config])
    frames["preference"] = export_pairs(lake, partitions=partitions, licenses=licenses)
    frames["conversation"] = export_conversations(lake, partitions=partitions, licenses=licenses)
    for config, frame in frames.items():
        if frame.height:
            _write_shards(frame, folder / config)
            done.configs[config] = frame.height
            for lic, n in frame.group_by("license").len().iter_rows():
                done.licenses[lic] = done.licenses.get(lic, 0) + n
    if not done.configs:
        raise ValueError("nothing to publish: no rows for these days and licences")
    atomic_write(
        folder / "README.md", lambda fh: fh.write(card(lake, done, frames, partitions, name).encode())
    )
    return done


def card(
    lake: Lake, done: Published, frames: dict[str, pl.DataFrame], partitions: Sequence[str] | None, name: str
) -> str:
    """The dataset card: YAML metadata the Hub and ``datasets`` read, then what the data is."""
    kept = {c: f for c, f in frames.items() if f.height}
    single = list(done.licenses) if len(done.licenses) == 1 else []
    header = {
        "pretty_name": name,
        "license": single[0] if single and single[0] != "unknown" else "other",
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "persona-hub", "personas"],
        "size_categories": [_size_category(sum(done.configs.values()))],
        "configs": [
            {"config_name": c, "data_files": [{"split": "train", "path": f"{c}/*.parquet"}]} for c in kept
        ],
    }
    days = partitions or sorted({p for f in kept.values() for p in f["partition"].unique().to_list()})
    models = sorted({m for f in kept.values() for m in f["model"].drop_nulls().unique().to_list()})
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        "Synthetic data made by the Persona Hub method (Tencent AI Lab, arXiv 2406.20094): web texts → the "
        "personas who would read or write them → their close relations → a deduplicated hub → data written "
        "for each persona. Every row names the persona it was written for and the text that persona came "
        "from, with that text's licence.",
        "",
        f"Days: {', '.join(days[:10])}{' …' if len(days) > 10 else ''}. Models: {', '.join(models) or '—'}.",
        "",
        "## Configurations",
        "",
        "| config | rows | prompting modes |",
        "| --- | ---: | --- |",
    ]
    for config, frame in kept.items():
        modes = (
            frame.group_by("prompting_mode").len().sort("prompting_mode")
            if "prompting_mode" in frame.columns
            else None
        )
        mix = ", ".join(f"{m} {n}" for m, n in modes.iter_rows()) if modes is not None else "—"
        lines.append(f"| {config} | {frame.height:,} | {mix} |")
    lines += ["", "## Licences of the source texts", "", "| licence | rows |", "| --- | ---: |"]
    lines += [f"| {lic} | {n:,} |" for lic, n in sorted(done.licenses.items(), key=lambda x: -x[1])]
    lines += [
        "",
        "Filter by the `license` column before training where terms matter; `unknown` means the source "
        "said nothing.",
    ]
    rejects = lake.read("rejects", partitions=list(partitions) if partitions else None)
    if rejects.height:
        top = (
            rejects.group_by("stage", "reason")
            .len()
            .sort(["stage", "len"], descending=[False, True])
            .group_by("stage", maintain_order=True)
            .head(3)
        )
        lines += [
            "",
            "## What was rejected, and why",
            "",
            "| stage | reason | rows |",
            "| --- | --- | ---: |",
        ]
        lines += [f"| {s} | {r[:80]} | {n:,} |" for s, r, n in top.iter_rows()]
    lines += ["", "## Columns", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| {c} | {m} |" for c, m in COLUMNS_EXPLAINED.items()]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("path/to/this/folder", "{next(iter(kept))}", split="train")',
        "```",
        "",
    ]
    return "\n".join(lines)


def card_header(text: str) -> dict:
    """The YAML header of a card (what the Hub reads)."""
    return yaml.safe_load(io.StringIO(text.split("---", 2)[1]))
