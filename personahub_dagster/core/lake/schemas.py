"""The lake's tables and their columns: one schema per table, shared by every writer and reader.

Kept apart from the storage (:mod:`.tables`) so that the stages that only build rows import polars and
nothing else; ``conform`` is the one gate every frame passes before it is written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl

from personahub_dagster.core.llm.cache.records import CALL_SCHEMA

PRODUCER = "_producer"  # the hidden partition column: which stage wrote a row
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # safe as a Delta partition value and in a predicate

TS = pl.Datetime("us", "UTC")
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "source_texts": {
        "text_id": pl.Utf8,
        "partition": pl.Utf8,
        "source_uri": pl.Utf8,
        "doc_id": pl.Utf8,
        "text": pl.Utf8,
        "n_chars": pl.Int64,
        "ingested_at": TS,
        "language": pl.Utf8,  # ISO 639-1 (core/stages/language.py); null in rows ingested before it
        "license": pl.Utf8,  # SPDX-style, lower case; "unknown" when nothing said (core/stages/provenance.py)
        "source_url": pl.Utf8,
        "encoding": pl.Utf8,  # what the bytes were read as: utf-8, or detected (core/stages/encoding.py)
    },
    "personas": {
        "persona_id": pl.Utf8,
        "persona": pl.Utf8,
        "occupation": pl.Utf8,
        "domain": pl.Utf8,
        "expertise_level": pl.Utf8,
        "method": pl.Utf8,
        "perspective": pl.Utf8,
        "source_text_id": pl.Utf8,
        "parent_persona_id": pl.Utf8,
        "relation": pl.Utf8,
        "hop": pl.Int32,
        "text_truncated": pl.Boolean,
        "model": pl.Utf8,
        "prompt_hash": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
        "locale": pl.Utf8,  # the source text's language (ISO 639-1): the persona's locale
        "language": pl.Utf8,  # the language the persona is written in
    },
    "hub": {
        "persona_id": pl.Utf8,
        "persona": pl.Utf8,
        "method": pl.Utf8,
        "hop": pl.Int32,
        "source_text_id": pl.Utf8,
        "parent_persona_id": pl.Utf8,
        "dup_of": pl.Utf8,
        "dup_reason": pl.Utf8,
        "similarity": pl.Float64,
        "nearest_similarity": pl.Float64,
        "partition": pl.Utf8,
        "created_at": TS,
        "locale": pl.Utf8,  # the persona's locale (its source text's language), for sampling by it
    },
    "persona_attributes": {
        "persona_id": pl.Utf8,
        "persona": pl.Utf8,
        "source_text_id": pl.Utf8,
        "domain": pl.Utf8,
        "occupation": pl.Utf8,
        "expertise_level": pl.Utf8,
        "age_band": pl.Utf8,
        "locale": pl.Utf8,
        "language": pl.Utf8,
        "cluster_id": pl.Int32,  # -1: no clustering yet
        "cluster_label": pl.Utf8,
        "cluster_similarity": pl.Float64,
        "clustering": pl.Utf8,  # the clustering version the id belongs to
        "corrected": pl.Utf8,  # JSON {attribute: why the model's value became "unknown"}
        "model": pl.Utf8,
        "prompt_hash": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "hub_composition": {
        "attribute": pl.Utf8,
        "value": pl.Utf8,
        "personas": pl.Int64,
        "share": pl.Float64,
        "clustering": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "generations": {
        "row_id": pl.Utf8,
        "data_type": pl.Utf8,
        "description": pl.Utf8,
        "prompting_mode": pl.Utf8,
        "constraints": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "prompt": pl.Utf8,
        "output": pl.Utf8,
        "model": pl.Utf8,
        "prompt_hash": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
        "language": pl.Utf8,  # the output's language, detected (ISO 639-1)
    },
    "conversation_turns": {
        "turn_id": pl.Utf8,
        "conversation_id": pl.Utf8,  # the conversation's generations row
        "turn": pl.Int32,
        "role": pl.Utf8,  # user | assistant
        "content": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "model": pl.Utf8,
        "request_hash": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "constraint_checks": {
        "row_id": pl.Utf8,  # the answer checked (a generations row when it met every constraint)
        "persona_id": pl.Utf8,
        "constraint": pl.Utf8,  # the reference's instruction id (IFEval's or IFBench's)
        "family": pl.Utf8,  # ifeval | ifbench
        "params": pl.Utf8,  # the instruction's kwargs, as JSON
        "passed": pl.Boolean,  # the strict verdict
        "loose": pl.Boolean,  # IFEval's loose verdict (without the first/last line, without *)
        "detail": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "preference_pairs": {
        "pair_id": pl.Utf8,
        "data_type": pl.Utf8,
        "prompt": pl.Utf8,
        "chosen": pl.Utf8,
        "rejected": pl.Utf8,
        "chosen_row_id": pl.Utf8,
        "rejected_row_id": pl.Utf8,
        "judge": pl.Utf8,  # checker, or the judging model
        "reason": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "model": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "math_checks": {
        "row_id": pl.Utf8,
        "persona_id": pl.Utf8,
        "source_text_id": pl.Utf8,
        "n_solutions": pl.Int32,
        "agreeing": pl.Int32,
        "agreement": pl.Boolean,
        "answer": pl.Utf8,
        "solutions": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "rejects": {
        "stage": pl.Utf8,
        "input_id": pl.Utf8,
        "request_hash": pl.Utf8,
        "raw_output": pl.Utf8,
        "reason": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "contamination": {
        "row_id": pl.Utf8,
        "benchmark": pl.Utf8,
        "flagged": pl.Boolean,
        "reason": pl.Utf8,
        "ngram_hits": pl.Int64,
        "similarity": pl.Float64,
        "benchmark_item": pl.Int64,
        "benchmark_text": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "persona_fidelity": {
        "data_type": pl.Utf8,
        "prompting_mode": pl.Utf8,
        "metric": pl.Utf8,  # retrieval_top1, persona_lift, distant_gap, judge_adherence, distinct_1/2, vendi
        "value": pl.Float64,
        "baseline": pl.Float64,  # chance, or what the neutral persona got
        "rows": pl.Int64,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "diversity_pairs": {
        "band": pl.Float64,
        "persona_a": pl.Utf8,
        "persona_b": pl.Utf8,
        "persona_similarity": pl.Float64,
        "problem_a": pl.Utf8,
        "problem_b": pl.Utf8,
        "problem_similarity": pl.Float64,
        "problems_valid": pl.Boolean,
        "model": pl.Utf8,
        "created_at": TS,
        "partition": pl.Utf8,
    },
    "llm_calls": CALL_SCHEMA,
}

_SQL_TYPES = {
    pl.Utf8: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Float64: "DOUBLE",
    pl.Boolean: "BOOLEAN",
}


def sql_type(dtype: pl.DataType) -> str:
    return "TIMESTAMPTZ" if isinstance(dtype, pl.Datetime) else _SQL_TYPES[dtype]


def now_utc() -> datetime:
    return datetime.now(UTC)


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame to the table's schema: fill absent columns with nulls, refuse unknown ones."""
    schema = SCHEMAS[table]
    extra = set(df.columns) - set(schema)
    if extra:
        raise ValueError(f"{table}: columns not in the schema: {sorted(extra)}")
    return df.select(
        [pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()]
    )


def rows_frame(table: str, rows: list[dict]) -> pl.DataFrame:
    """A frame in ``table``'s schema from row dicts (missing keys become nulls)."""
    return pl.DataFrame(rows, schema=SCHEMAS[table])
