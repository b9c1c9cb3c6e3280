"""The RLVR export a trainer feeds to a verifier: ``personahub export --type verifiable_instruction --format
rlvr`` after the real stage ran on a scripted model (one answer meeting its constraints, one of the kinds
models write), read back, and every answer re-checked by the reference package's own checkers from the
row's ``ground_truth`` alone — the verdicts are the stored ones. The SFT export reads as TRL's
conversational format."""

from __future__ import annotations

import json
import logging

import polars as pl

from personahub_dagster.cli import main as cli
from personahub_dagster.core.instructions import draw, witness
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.prompts import load_prompt
from personahub_dagster.core.stages.verifiable import verifiable_instructions
from tests.support.fake_openai import FakeOpenAI
from tests.support.if_answers import answers
from tests.support.reference_if import recheck_ground_truth

DAY = "2026-12-01"
TASK = "Could you draft a short note to my beekeeping club about moving the honey harvest to Saturday?"
PERSONAS = [
    {"persona_id": f"p-{i:03d}", "persona": f"A beekeeper who runs club number {i}.", "source_text_id": "t-1"}
    for i in range(40)
]


def _lake(root) -> Lake:
    lake = Lake(root)
    text = {
        "text_id": "t-1",
        "partition": DAY,
        "text": "Bees.",
        "license": "cc-by-4.0",
        "ingested_at": now_utc(),
    }
    rows = [{**p, "method": "text", "hop": 0, "partition": DAY, "created_at": now_utc()} for p in PERSONAS]
    lake.write("source_texts", rows_frame("source_texts", [text]), producer="raw_texts", partition=DAY)
    lake.write("personas", rows_frame("personas", rows), producer="text_personas", partition=DAY)
    return lake


def _model():
    """Answers as a model might give them: at the low temperature one that meets the prompt's constraints
    (a witness for the set drawn for some persona, found by its prompt), at the high one a stock answer."""
    good = {}
    for p in PERSONAS:
        for n in (1, 2, 3):
            chosen = draw(p["persona_id"], 0, n, TASK)
            good[TASK + "\n\n" + " ".join(c.describe() for c in chosen)] = witness(chosen)
    stock = answers(len(PERSONAS), seed=11)

    def reply(n: int, body: dict) -> tuple[str, str]:
        if body["messages"][0]["content"].startswith("You imagine what real people ask"):
            return "ok", TASK
        asked = body["messages"][-1]["content"]
        return "ok", good[asked] if body["temperature"] < 0.5 else stock[n % len(stock)]

    return reply


def test_rlvr_rows_re_check_with_the_reference_from_ground_truth_alone(tmp_path, make_gateway, capsys):
    logging.getLogger().setLevel(logging.CRITICAL)
    lake = _lake(tmp_path / "lake")
    with FakeOpenAI(_model()) as server:
        out = verifiable_instructions(
            pl.DataFrame(PERSONAS),
            make_gateway(server),
            load_prompt("instruction"),
            load_prompt("assistant_response"),
            partition=DAY,
        )
    lake.write_many(
        {"generations": out.rows, "constraint_checks": out.checks, "rejects": out.rejects},
        producer="verifiable_instructions",
        partition=DAY,
    )
    # every witness passes; most stock answers miss something (a few meet their constraints by chance)
    assert len(PERSONAS) <= out.rows.height < 2 * len(PERSONAS) and out.rejects.height > 0

    path = tmp_path / "rlvr.jsonl"
    assert (
        cli(
            [
                "export",
                "--type",
                "verifiable_instruction",
                "--format",
                "rlvr",
                str(path),
                "--lake",
                str(lake.root),
            ]
        )
        == 0
    )
    assert f"{out.rows.height} verifiable instruction rows" in capsys.readouterr().out
    rlvr = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rlvr) == out.rows.height and {r["dataset"] for r in rlvr} == {"ifeval", "ifbench"}

    # every answer to a row's prompt — the kept one and the rejected one — re-checked from ground_truth alone
    texts = dict(zip(out.rows["row_id"], out.rows["output"], strict=True))
    texts |= dict(zip(out.rejects["input_id"], out.rejects["raw_output"], strict=True))
    stored = out.checks.group_by("row_id", "persona_id", maintain_order=True).agg("constraint", "passed")
    by_persona = {r["persona_id"]: r for r in rlvr}
    compared = 0
    for answer in stored.iter_rows(named=True):
        row = by_persona[answer["persona_id"]]
        label = json.loads(row["ground_truth"])[0]
        assert label["instruction_id"] == answer["constraint"]
        assert row["messages"] == [{"role": "user", "content": row["messages"][0]["content"]}]
        assert (
            recheck_ground_truth(texts[answer["row_id"]], row["ground_truth"], row["dataset"])
            == answer["passed"]
        )
        compared += 1
    assert compared == 2 * len(PERSONAS) and not all(stored.explode("passed")["passed"])


def test_the_sft_export_is_conversational(tmp_path, make_gateway, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets
    from trl.data_utils import is_conversational

    lake = _lake(tmp_path / "lake")
    with FakeOpenAI(_model()) as server:
        out = verifiable_instructions(
            pl.DataFrame(PERSONAS[:6]),
            make_gateway(server),
            load_prompt("instruction"),
            load_prompt("assistant_response"),
            partition=DAY,
        )
    lake.write("generations", out.rows, producer="verifiable_instructions", partition=DAY)
    path = tmp_path / "sft.parquet"
    assert (
        cli(
            [
                "export",
                "--type",
                "verifiable_instructions",
                "--format",
                "sft",
                str(path),
                "--lake",
                str(lake.root),
            ]
        )
        == 0
    )
    sft = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert sft.num_rows == out.rows.height and is_conversational(sft[0])
    first = sft[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"] and first[0]["content"].startswith(TASK)
    assert (
        cli(
            [
                "export",
                "--type",
                "math",
                "--format",
                "rlvr",
                str(tmp_path / "x.jsonl"),
                "--lake",
                str(lake.root),
            ]
        )
        == 2
    )


def test_rows_from_before_reference_ids_are_left_out_of_rlvr():
    from personahub_dagster.core.lake.export import LINEAGE, rlvr_frame

    row = {k: "x" for k in LINEAGE} | {"prompt": "Plan a garden."}
    current = json.dumps([{"id": "punctuation:no_comma", "family": "ifeval", "kwargs": {}}])
    legacy = json.dumps([{"kind": "no_commas"}])
    rows = pl.DataFrame([row | {"constraints": current}, row | {"constraints": legacy}])
    out = rlvr_frame(rows)
    assert out.height == 1 and json.loads(out["ground_truth"][0])[0]["instruction_id"] == [
        "punctuation:no_comma"
    ]
