"""Datasets in the public PersonaHub release format, with our lineage columns.

The release files (``math.jsonl``, ``reasoning.jsonl``, …) have three columns: ``input persona``,
``synthesized text`` and ``description``. Our rows add what makes each one traceable and filterable:
``row_id`` → ``persona_id`` → ``parent_persona_id`` → ``source_text_id``, the model and the prompting
mode, and for math the agreement filter's verdict — so an export can sit next to the public release
and still be walked back to the text it came from (``personahub lineage ROW_ID``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.storage.store import atomic_write

RELEASE_COLUMNS = ("input persona", "synthesized text", "description")

_SQL = """
WITH persona AS (
    SELECT persona_id, any_value(persona) AS persona, any_value(parent_persona_id) AS parent_persona_id
    FROM personas GROUP BY persona_id
), checks AS (
    SELECT row_id, any_value(agreement) AS agreement, any_value(answer) AS answer
    FROM math_checks GROUP BY row_id
), contaminated AS (
    SELECT row_id, bool_or(flagged) AS contaminated FROM contamination GROUP BY row_id
), source AS (
    SELECT text_id AS source_text_id, any_value(license) AS license, any_value(source_url) AS source_url
    FROM source_texts GROUP BY text_id
)
SELECT p.persona AS "input persona", g.output AS "synthesized text", g.description, g.prompt,
       g.row_id, g.data_type, g.prompting_mode, g.constraints, g.persona_id, p.parent_persona_id,
       g.source_text_id, coalesce(s.license, 'unknown') AS license, s.source_url, g.model, g.partition,
       c.agreement, c.answer, coalesce(k.contaminated, false) AS contaminated,
       s.source_text_id IS NOT NULL AS _text_found
FROM generations g
LEFT JOIN persona p USING (persona_id)
LEFT JOIN checks c USING (row_id)
LEFT JOIN contaminated k USING (row_id)
LEFT JOIN source s USING (source_text_id)
WHERE g.data_type = ? {filters}
ORDER BY g.partition, g.prompting_mode, g.row_id
"""


def export_frame(
    lake: Lake,
    data_type: str,
    modes: Sequence[str] | None = None,
    agreed_only: bool = False,
    partitions: Sequence[str] | None = None,
    include_contaminated: bool = False,
    licenses: Collection[str] | None = None,
) -> pl.DataFrame:
    """Every generated row of ``data_type`` in release columns + ours (``agreed_only``: math problems
    whose solutions agreed; ``partitions``: only those days). Rows a contamination check flagged are
    left out unless ``include_contaminated`` (then the ``contaminated`` column says which). Every row
    carries its source text's ``license`` and ``source_url``; ``licenses`` keeps only the rows whose
    source text is under one of them (``unknown`` is kept only when named)."""
    filters, params = "", [data_type]
    if partitions:
        filters += f" AND g.partition IN ({', '.join('?' for _ in partitions)})"
        params += list(partitions)
    if modes:
        filters += f" AND g.prompting_mode IN ({', '.join('?' for _ in modes)})"
        params += list(modes)
    if agreed_only:
        filters += " AND c.agreement"
    if not include_contaminated:
        filters += " AND NOT coalesce(k.contaminated, false)"

    sql = _SQL.format(filters=filters)
    if partitions:  # the days' own tables first: a night's export reads its day, not the lake
        with lake.connect(partitions=partitions) as con:
            df = con.sql(sql, params=params).pl()
        if df["input persona"].is_not_null().all() and df["_text_found"].all():
            return _licensed(df.drop("_text_found"), licenses)
    with lake.connect() as con:  # rows made from another day's personas or texts: look everywhere
        return _licensed(con.sql(sql, params=params).pl().drop("_text_found"), licenses)


LINEAGE = ("row_id", "persona_id", "source_text_id", "license", "source_url", "model", "partition")


def rlvr_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """Verifiable-instruction rows (from :func:`export_frame`) as open-instruct's RLVR data: the request as
    ``messages`` (the policy writes the answer), ``ground_truth`` naming the reference's instruction ids and
    their kwargs — so IFEval's (or IFBench's) own checkers verify it, the same verifier as the benchmark —,
    ``dataset`` (which verifier: ``ifeval`` or ``ifbench``) and ``constraint_type``, then our lineage.
    Rows made before constraints were stored as reference ids (``{"kind": …}``) have no ground truth a
    reference checker reads, and are left out."""
    from personahub_dagster.core.instructions import KINDS, Constraint, dataset_of, ground_truth

    out = []
    for r in rows.iter_rows(named=True):
        stored = json.loads(r["constraints"] or "[]")
        if not stored or any(not isinstance(c, dict) or c.get("id") not in KINDS for c in stored):
            continue
        constraints = [Constraint.from_json(c) for c in stored]
        out.append(
            {
                "messages": [{"role": "user", "content": r["prompt"]}],
                "ground_truth": ground_truth(constraints),
                "dataset": dataset_of(constraints),
                "constraint_type": ", ".join(c.id for c in constraints),
                "constraint": " ".join(c.describe() for c in constraints),
                **{k: r[k] for k in LINEAGE},
            }
        )
    return pl.DataFrame(out, schema=_RLVR_SCHEMA)


_MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
_LINEAGE_SCHEMA = {k: pl.Utf8 for k in LINEAGE}
_RLVR_SCHEMA = {
    "messages": _MESSAGES,
    "ground_truth": pl.Utf8,
    "dataset": pl.Utf8,
    "constraint_type": pl.Utf8,
    "constraint": pl.Utf8,
    **_LINEAGE_SCHEMA,
}


def sft_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows (from :func:`export_frame`) as ``messages`` — the prompt as the user's turn, the row as the
    assistant's — the conversational format TRL's ``SFTTrainer`` takes, then our lineage."""
    return rows.select(
        pl.concat_list(
            pl.struct(pl.lit("user").alias("role"), pl.col("prompt").alias("content")),
            pl.struct(pl.lit("assistant").alias("role"), pl.col("synthesized text").alias("content")),
        ).alias("messages"),
        *LINEAGE,
    )


def _licensed(df: pl.DataFrame, licenses: Collection[str] | None) -> pl.DataFrame:
    return df if licenses is None else df.filter(pl.col("license").is_in(list(licenses)))


DPO_COLUMNS = ("prompt", "chosen", "rejected")  # TRL's standard preference format

_PAIRS_SQL = """
SELECT p.prompt, p.chosen, p.rejected, p.pair_id, p.data_type, p.judge, p.reason, p.chosen_row_id,
       p.rejected_row_id, p.persona_id, p.source_text_id, coalesce(s.license, 'unknown') AS license,
       s.source_url, p.model, p.partition, s.text_id IS NOT NULL AS _text_found
FROM preference_pairs p
LEFT JOIN (SELECT text_id, any_value(license) AS license, any_value(source_url) AS source_url
           FROM source_texts GROUP BY text_id) s ON s.text_id = p.source_text_id
{where}
ORDER BY p.partition, p.pair_id
"""


def export_pairs(
    lake: Lake, partitions: Sequence[str] | None = None, licenses: Collection[str] | None = None
) -> pl.DataFrame:
    """Preference pairs in TRL's DPO format (``prompt``, ``chosen``, ``rejected``, the columns
    ``DPOTrainer`` reads) followed by ours: the judge and its reason, the rows each half came from,
    the persona and source text with its licence."""
    where = f"WHERE p.partition IN ({', '.join('?' for _ in partitions)})" if partitions else ""
    return _query(lake, _PAIRS_SQL.format(where=where), list(partitions or []), partitions, licenses)


_CONVERSATIONS_SQL = """
SELECT c.conversation_id, list({{'role': c.role, 'content': c.content}} ORDER BY c.turn) AS messages,
       any_value(c.persona_id) AS persona_id, any_value(c.source_text_id) AS source_text_id,
       coalesce(any_value(s.license), 'unknown') AS license, any_value(s.source_url) AS source_url,
       any_value(c.model) AS model, any_value(c.partition) AS partition,
       bool_and(s.text_id IS NOT NULL) AS _text_found
FROM conversation_turns c
LEFT JOIN (SELECT text_id, any_value(license) AS license, any_value(source_url) AS source_url
           FROM source_texts GROUP BY text_id) s ON s.text_id = c.source_text_id
{where}
GROUP BY c.conversation_id
ORDER BY partition, c.conversation_id
"""


def export_conversations(
    lake: Lake, partitions: Sequence[str] | None = None, licenses: Collection[str] | None = None
) -> pl.DataFrame:
    """Conversations as OpenAI / ShareGPT-style ``messages`` (a list of ``{role, content}``, in turn
    order), with the conversation's id, persona, source text and its licence."""
    where = f"WHERE c.partition IN ({', '.join('?' for _ in partitions)})" if partitions else ""
    return _query(lake, _CONVERSATIONS_SQL.format(where=where), list(partitions or []), partitions, licenses)


def _query(
    lake: Lake, sql: str, params: list, partitions: Sequence[str] | None, licenses: Collection[str] | None
) -> pl.DataFrame:
    """``sql`` over the days' own tables first, then (for rows made from another day's texts) all."""
    if partitions:
        with lake.connect(partitions=partitions) as con:
            df = con.sql(sql, params=params).pl()
        if df["_text_found"].all():
            return _licensed(df.drop("_text_found"), licenses)
    with lake.connect() as con:
        return _licensed(con.sql(sql, params=params).pl().drop("_text_found"), licenses)


def export_writer(df: pl.DataFrame, fmt: str) -> Callable[[BinaryIO], object]:
    """What writes ``df`` as ``fmt`` (parquet | jsonl) into a binary file — a local one or a lake object."""
    if fmt == "parquet":
        return lambda fh: df.write_parquet(fh, compression="zstd", statistics=True)
    if fmt == "jsonl":
        return df.write_ndjson
    raise ValueError(f"unknown export format {fmt!r}: use jsonl or parquet")


def write_export(df: pl.DataFrame, out: str | Path, fmt: str | None = None) -> Path:
    """Write ``df`` to a local file as Parquet or JSONL (from ``fmt`` or the file suffix), atomically."""
    out = Path(out)
    atomic_write(out, export_writer(df, fmt or ("parquet" if out.suffix == ".parquet" else "jsonl")))
    return out
