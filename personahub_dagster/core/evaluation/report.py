"""The dataset report: one self-contained HTML file a user opens before training on the data.

Everything comes from the lake (so the report of an old run can be made again): counts, the yield of
every LLM stage (rows against rejects), reject reasons, tokens and cost, the hub's duplicates and
nearest-neighbour similarities, its composition (attributes, locales, topic clusters), the diversity
bands, contamination hits, the math agreement filter and persona fidelity. Plots are PNGs inlined as
data URIs: the file has no outside references.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from personahub_dagster.core.config.secrets import redact
from personahub_dagster.core.evaluation.diversity import band_summary
from personahub_dagster.core.evaluation.plots import png_base64
from personahub_dagster.core.hub import clusters
from personahub_dagster.core.hub.composition import hub_composition, read_totals, totals_frame
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.data_types import load_data_types
from personahub_dagster.core.storage.store import atomic_write

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2733}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #d7dde4;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d7dde4;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f1f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6b7785}.flag{color:#a4262c;font-weight:600}img{max-width:100%}
"""


def _table(df: pl.DataFrame, width: int = 160) -> str:
    if df.is_empty():
        return '<p class="muted">none</p>'

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f'<td class="n">{v:,.4g}</td>'
        if isinstance(v, int) and not isinstance(v, bool):
            return f'<td class="n">{v:,}</td>'
        s = "" if v is None else str(v)
        s = s if len(s) <= width else s[: width - 1] + "…"
        return f"<td>{html.escape(s)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in df.iter_rows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _plot(draw: Callable[[object], object], title: str, xlabel: str, ylabel: str) -> str:
    data = png_base64(draw, title, xlabel, ylabel, size=(6.4, 3.2))
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _sql(lake: Lake, sql: str, params: list[object], day: str | None = None) -> pl.DataFrame:
    """``sql`` over the lake; with ``day``, over that day's rows alone (only its files are opened)."""
    with lake.connect(partitions=[day] if day else None) as con:
        return con.sql(sql, params=params).pl()


def build_report(
    lake: Lake, partition: str | None = None, prompts_dir: str | None = None, run_id: str | None = None
) -> str:
    """The report as an HTML string (``partition``: one day; default every day in the lake;
    ``prompts_dir``: where a user's data type registry is, to name the synthesis stages; ``run_id``:
    the calls of that run only, else of the whole journal)."""
    where = "WHERE partition = ?" if partition else ""
    p = [partition] if partition else []
    sections: list[str] = []

    counts = pl.DataFrame({"table": list(lake.counts()), "rows": list(lake.counts().values())})
    sections.append(f"<h2>Tables</h2>{_table(counts)}")

    made = _sql(
        lake,
        f"""SELECT CASE WHEN method = 'text' THEN 'text_personas' ELSE 'expanded_personas' END AS stage,
                   count(*) AS rows FROM personas {where} GROUP BY 1
            UNION ALL SELECT data_type, count(*) FROM generations {where} GROUP BY 1
            UNION ALL SELECT 'math_checks', count(*) FROM math_checks {where}
            UNION ALL SELECT 'preference_pairs', count(*) FROM preference_pairs
                WHERE judge <> 'checker' {"AND partition = ?" if partition else ""}""",
        p * 4,
        partition,
    )
    asset_of = {name: dt.asset for name, dt in load_data_types(prompts_dir).items()}
    asset_of |= {"verifiable_instruction": "verifiable_instructions", "conversation": "conversations"}
    made = made.with_columns(pl.col("stage").replace(asset_of))
    lost = _sql(lake, f"SELECT stage, count(*) AS rejects FROM rejects {where} GROUP BY 1", p, partition)
    yields = (
        made.join(lost, on="stage", how="full", coalesce=True)
        .fill_null(0)
        .with_columns((pl.col("rows") / (pl.col("rows") + pl.col("rejects")).clip(1)).round(3).alias("yield"))
        .sort("stage")
    )
    sections.append(f"<h2>Yield per stage</h2>{_table(yields)}")

    reasons = _sql(
        lake,
        f"""SELECT stage, left(regexp_replace(reason, '[0-9a-f]{{16,}}', '…', 'g'), 90) AS reason,
                   count(*) AS n FROM rejects {where} GROUP BY 1, 2
            QUALIFY row_number() OVER (PARTITION BY stage ORDER BY count(*) DESC) <= 6
            ORDER BY stage, n DESC""",
        p,
        partition,
    )
    sections.append(f"<h2>Reject reasons</h2>{_table(reasons)}")

    calls_sql = """SELECT stage, model, count(*) AS attempts, count(*) FILTER (WHERE status = 'ok') AS ok,
                  sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
                  count(*) FILTER (WHERE status = 'ok' AND mode = 'batch') AS batch_calls,
                  round(sum(cost_usd), 6) AS cost_usd,
                  round(sum(cost_usd * CASE WHEN mode = 'batch' THEN 1 ELSE 0.5 END), 6)
                      AS cost_usd_all_batch,
                  round(avg(latency_s), 3) AS mean_latency_s
           FROM llm_calls GROUP BY 1, 2 ORDER BY 1"""
    if run_id is not None:  # the run's own calls: a night's report does not read the whole journal
        with duckdb.connect() as con:
            con.register("llm_calls", lake.calls_of_run(run_id).to_arrow())
            calls = con.sql(calls_sql).pl()
        whose = f"The calls of run <code>{html.escape(run_id)}</code>."
    else:
        calls = _sql(lake, calls_sql, [])
        whose = "All runs in this lake (the call journal is not partitioned)."
    sections.append(
        f"<h2>LLM calls, tokens and cost</h2><p class='muted'>{whose} <code>batch_calls</code> were "
        "answered through the provider's batch API, at its price; <code>cost_usd_all_batch</code> is "
        f"what every call would have cost there (half the online price).</p>{_table(calls)}"
    )

    hub = lake.read("hub", partitions=p or None)
    if hub.height:
        dups = hub.filter(pl.col("dup_of").is_not_null()).group_by("dup_reason").len().sort("dup_reason")
        sims = hub["nearest_similarity"].drop_nulls().to_list()
        plot = _plot(
            lambda ax: ax.hist(sims, bins=30, color="#4f6d8f"),
            "cosine to the nearest kept persona (at dedup time)",
            "cosine",
            "personas",
        )
        sections.append(
            f"<h2>Hub</h2><p>{hub.height:,} personas, {hub.filter(pl.col('dup_of').is_null()).height:,} kept."
            f"</p>{_table(dups.rename({'len': 'duplicates'}))}{plot if sims else ''}"
        )

    pairs = lake.read("diversity_pairs", partitions=p or None)
    if pairs.height:
        summary = band_summary(pairs)
        groups = [pairs.filter(pl.col("band") == b)["problem_similarity"].to_list() for b in summary["band"]]
        plot = _plot(
            lambda ax: ax.boxplot(groups, tick_labels=[f"{b:g}" for b in summary["band"]]),
            "similarity of the problems synthesized for persona pairs",
            "persona similarity band",
            "problem similarity",
        )
        sections.append(
            "<h2>Diversity (the paper's Figure 10)</h2><p>Persona pairs sampled in similarity bands, one "
            f"math problem each at temperature 0, the problems' cosine per band.</p>{_table(summary)}{plot}"
        )

    contam = lake.read("contamination", partitions=p or None)
    if contam.height:
        by = contam.group_by("benchmark").agg(
            pl.len().alias("rows_checked"),
            pl.col("flagged").sum().alias("flagged"),
            pl.col("reason").drop_nulls().unique().sort().str.join(", ").alias("reasons"),
        )
        hits = contam.filter("flagged").select(
            "row_id", "benchmark", "reason", "similarity", "benchmark_text"
        )
        sections.append(
            "<h2>Contamination</h2><p>Flagged rows stay in the lake and are left out of exports by "
            f"default.</p>{_table(by)}{_table(hits.head(20))}"
        )

    math = lake.read("math_checks", partitions=p or None)
    if math.height:
        agreed = int(math["agreement"].sum())
        sections.append(
            f"<h2>Math validity</h2><p>{math.height} problems solved independently; {agreed} "
            f"({agreed / math.height:.0%}) passed the agreement filter (math-verify equivalence).</p>"
            + _table(math.select("row_id", "n_solutions", "agreeing", "agreement", "answer").head(50))
        )

    licences = _sql(
        lake,
        f"""SELECT g.data_type, CASE WHEN t.text_id IS NULL THEN '(a text of another day)'
                                    ELSE coalesce(t.license, 'unknown') END AS license, count(*) AS rows
            FROM (SELECT * FROM generations {where}) g
            LEFT JOIN (SELECT DISTINCT text_id, license FROM source_texts) t ON t.text_id = g.source_text_id
            GROUP BY 1, 2 ORDER BY 1, 3 DESC""",
        p,
        partition,
    )
    if licences.height:
        sections.append(
            "<h2>Licences</h2><p>The licence of the text each row was made from "
            "(<code>personahub export --license</code> filters by it).</p>" + _table(licences)
        )
    sections += _composition_section(lake, partition) + _fidelity_section(lake, p)
    scope = f"partition {partition}" if partition else "every partition"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>PersonaHub report</title>"
        f"<style>{_CSS}</style></head><body><h1>PersonaHub dataset report</h1>"
        f"<p class='muted'>Lake {html.escape(lake.uri)}, {scope}, made {stamp}.</p>"
        + "".join(sections)
        + "</body></html>"
    )


def _composition_section(lake: Lake, partition: str | None) -> list[str]:
    """The hub's make-up: the shares summed over every day's counts, and the day's beside them."""
    totals = totals_frame(read_totals(lake.files.child("composition"))[0]["counts"])
    if totals.is_empty():
        return []
    live, _ = clusters.current(lake.files.child("clusters"))
    hub = hub_composition(totals, live.version if live else None)
    day = lake.read("hub_composition", partitions=[partition]) if partition else None
    parts = ["<h2>Hub composition</h2><p>Shares of the hub's kept personas (all days so far)"]
    parts.append(f"; {partition}'s own beside them.</p>" if day is not None else ".</p>")
    for attribute in ("domain", "locale", "expertise_level", "age_band", "cluster"):
        rows = hub.filter(pl.col("attribute") == attribute).head(12)
        if rows.is_empty():
            continue
        if day is not None:
            mine = day.filter(pl.col("attribute") == attribute).select(
                "value", pl.col("share").alias("day_share")
            )
            rows = rows.join(mine, on="value", how="left")
        values, shares = rows["value"].to_list(), rows["share"].to_list()
        plot = _plot(
            lambda ax, v=values, s=shares: ax.barh(v[::-1], s[::-1], color="#4f6d8f"), attribute, "share", ""
        )
        parts.append(f"<h3>{attribute}</h3>{_table(rows.drop('attribute'))}{plot}")
    return ["".join(parts)]


def _fidelity_section(lake: Lake, days: list[str]) -> list[str]:
    metrics = lake.read("persona_fidelity", partitions=days or None)
    if metrics.is_empty():
        return []
    wide = metrics.pivot(
        "metric", index=["data_type", "prompting_mode"], values="value", aggregate_function="mean"
    )
    chance = metrics.filter(pl.col("metric") == "retrieval_top1")["baseline"].mean()
    return [
        "<h2>Persona fidelity</h2><p>Does a row reflect its persona? <code>retrieval_top1</code>: its own "
        f"persona picked out of k by the output's embedding (chance {chance or 0:.2f}); "
        "<code>persona_lift</code> / <code>distant_gap</code>: how much closer the output is to its persona "
        "than the same prompt's output with no persona / a distant one (0: the persona changed nothing); "
        "<code>judge_adherence</code>: a model's 1–5 score; distinct-n and Vendi: diversity.</p>"
        + _table(wide.with_columns(pl.col(pl.Float64).round(3)))
    ]


def write_report(
    lake: Lake,
    out: str | Path | None = None,
    partition: str | None = None,
    prompts_dir: str | None = None,
    run_id: str | None = None,
) -> str:
    """Write the report to ``out`` (a local file), or by default into the lake, wherever it is
    (``reports/<day or all>.html``); returns where it went."""
    # the lake's rows are redacted when written; a lake written by an older release may not be
    data = (redact(build_report(lake, partition, prompts_dir, run_id)) or "").encode("utf-8")
    if out is None:
        return lake.files.put(f"reports/{partition or 'all'}.html", data)
    atomic_write(Path(out), lambda fh: fh.write(data))
    return str(out)
