"""The lake's storage, measured: Parquet slices (the layout of earlier releases) against Delta tables on
local disk and on an S3-compatible server (SeaweedFS, started here on 127.0.0.1), in the same run.

Two workloads, each written then queried:

* **demo**: the writes a demo day makes (one slice per stage and table, a few hundred rows each) and the
  ``personahub stats`` queries;
* **1M personas**: ten daily slices of 100k personas (Text-to-Persona roots and six hops of relations),
  with 150k source texts and 50k generated rows; then ``personahub sql`` queries over it: a GROUP BY of
  personas by method and hop, and the lineage walk of one generated row back to its text.

The Parquet-slice baseline is the earlier release's write path (temp file + fsync + rename per slice)
and read path (DuckDB views over a glob of the slices), kept here as a subclass of :class:`Lake`.

    python benchmarks/lake.py [--rows 1000000] [--repeat 3] [--no-s3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic_personas import many
from personahub_dagster.cli.lake import STATS_QUERIES
from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.schemas import SCHEMAS, conform, now_utc, rows_frame, sql_type
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.storage.store import atomic_write

GROUP_BY = "SELECT method, hop, count(*) FROM personas GROUP BY ALL ORDER BY ALL"


class ParquetSliceLake(Lake):
    """The earlier release's lake: one Parquet file per (table, stage, day), views over globs, and
    after each stage's writes the DuckDB catalog file rebuilt and renamed into place."""

    def write_many(self, frames, *, producer, partition):
        for table, df in frames.items():
            path = self.root / "tables" / table / producer / f"{partition}.parquet"
            data = conform(table, df)
            atomic_write(path, lambda fh, d=data: d.write_parquet(fh, compression="zstd", statistics=True))
        tmp = self.root / ".catalog.tmp"
        tmp.unlink(missing_ok=True)
        with duckdb.connect(str(tmp)) as con:
            for table in SCHEMAS:
                self._create_view(con, table, self._open(table))
            con.execute("CHECKPOINT")
        os.replace(tmp, self.root / "personahub.duckdb")
        return {}

    def _open(self, table, as_of=None):
        return table if any((self.root / "tables" / table).glob("*/*.parquet")) else None

    def _create_view(self, con, table, dt, days=None):
        if dt is None:
            cols = ", ".join(f'CAST(NULL AS {sql_type(t)}) AS "{c}"' for c, t in SCHEMAS[table].items())
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} WHERE false")
            return
        glob = self.root / "tables" / table / "*" / "*.parquet"
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', union_by_name = true)"
        )


class ArrowReaderLake(Lake):
    """Delta on local disk read the way a remote lake is: deltalake's Arrow datasets in DuckDB."""

    def _create_view(self, con, table, dt, days=None):
        if dt is None or not dt.file_uris():
            super()._create_view(con, table, None)
        else:
            self._arrow_view(con, table, dt, days)


BACKENDS = {  # name → the Lake class; None: Delta on the S3 server
    "Parquet slices (before)": ParquetSliceLake,
    "Delta, local disk": Lake,
    "Delta, local, Arrow-dataset reader": ArrowReaderLake,
    "Delta, SeaweedFS S3": None,
}


def demo_writes() -> list[tuple[str, str, dict[str, pl.DataFrame]]]:
    """(producer, day, frames) in the order a demo day writes them, with the demo's row counts."""
    day, ts = "2026-11-20", now_utc()

    def persona(hop: int, i: int, text: str) -> dict:
        return {
            "persona_id": f"p-{hop}-{i}",
            "persona": text,
            "method": "text" if hop == 0 else "relation",
            "parent_persona_id": f"p-{hop - 1}-{i}" if hop else None,
            "source_text_id": f"t-{i % 12:04d}",
            "hop": hop,
            "partition": day,
            "created_at": ts,
        }

    def generation(name: str, i: int) -> dict:
        return {
            "row_id": f"g-{name}-{i}",
            "data_type": name,
            "persona_id": f"p-0-{i}",
            "source_text_id": f"t-{i % 12:04d}",
            "output": "x" * 400,
            "prompting_mode": "zero_shot",
            "partition": day,
            "created_at": ts,
        }

    texts = [
        {"text_id": f"t-{i:04d}", "partition": day, "text": f"text {i}", "ingested_at": ts} for i in range(12)
    ]
    hop0 = [persona(0, i, p) for i, p in enumerate(many(48, seed=1))]
    hops = [persona(h, i, p) for h in range(1, 7) for i, p in enumerate(many(48, seed=h + 1))]
    rejects = rows_frame("rejects", [{"stage": "x", "input_id": str(i), "partition": day} for i in range(8)])
    writes = [
        ("raw_texts", day, {"source_texts": rows_frame("source_texts", texts)}),
        ("text_personas", day, {"personas": rows_frame("personas", hop0), "rejects": rejects}),
        ("expanded_personas", day, {"personas": rows_frame("personas", hops), "rejects": rejects}),
        ("persona_hub", day, {"hub": rows_frame("hub", [{**p, "dup_of": None} for p in hop0 + hops])}),
    ]
    for t, name in enumerate(("math", "logic", "instructions", "knowledge", "npc", "tools")):
        gens = rows_frame("generations", [generation(name, i) for i in range(9)])
        writes.append((f"{name}_problems", day, {"generations": gens, "rejects": rejects.head(t)}))
    return writes


def million(rows: int) -> list[tuple[str, str, dict[str, pl.DataFrame]]]:
    """Ten days; per day rows/10 personas in chains of 7 (a root and six hops), their texts, generations."""
    per_day, ts, rng = rows // 10, now_utc(), random.Random(0)
    texts_pool = many(2000, seed=3)
    writes = []
    for d in range(10):
        day = f"2026-11-{d + 1:02d}"
        roots = per_day // 7
        n = roots * 7
        idx = pl.Series(range(n))
        hop = (idx // roots).cast(pl.Int32)
        root = idx % roots
        pid = pl.format("p-{}-{}-{}", pl.lit(d), pl.col("hop"), pl.col("root"))
        personas = (
            pl.DataFrame({"hop": hop, "root": root})
            .with_columns(
                persona_id=pid,
                persona=pl.Series([texts_pool[i % 2000] for i in range(n)]),
                method=pl.when(pl.col("hop") == 0).then(pl.lit("text")).otherwise(pl.lit("relation")),
                parent_persona_id=pl.when(pl.col("hop") == 0)
                .then(None)
                .otherwise(pl.format("p-{}-{}-{}", pl.lit(d), pl.col("hop") - 1, pl.col("root"))),
                source_text_id=pl.format("t-{}-{}", pl.lit(d), pl.col("root")),
                partition=pl.lit(day),
                created_at=pl.lit(ts),
            )
            .drop("root")
        )
        texts = pl.DataFrame({"text_id": [f"t-{d}-{r}" for r in range(roots)]}).with_columns(
            partition=pl.lit(day), text=pl.lit("a web page about beekeeping " * 20), ingested_at=pl.lit(ts)
        )
        chosen = [rng.randrange(roots) for _ in range(per_day // 20)]
        gens = pl.DataFrame(
            {
                "row_id": [content_id("generation", d, i) for i in range(len(chosen))],
                "persona_id": [f"p-{d}-6-{r}" for r in chosen],
                "source_text_id": [f"t-{d}-{r}" for r in chosen],
            }
        ).with_columns(data_type=pl.lit("math_problem"), output=pl.lit("x" * 300), partition=pl.lit(day),
                       created_at=pl.lit(ts))  # fmt: skip
        writes.append(("raw_texts", day, {"source_texts": conform("source_texts", texts)}))
        writes.append(("expanded_personas", day, {"personas": conform("personas", personas)}))
        writes.append(("math_problems", day, {"generations": conform("generations", gens)}))
    return writes


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def measure(lake: Lake, workload: list, repeat: int, lineage_id: str | None) -> dict[str, float]:
    started = time.perf_counter()
    for producer, day, frames in workload:
        lake.write_many(frames, producer=producer, partition=day)
    result = {"write": time.perf_counter() - started}

    def stats():
        with lake.connect() as con:
            for sql in STATS_QUERIES.values():
                con.execute(sql).fetchall()

    def group_by():
        with lake.connect() as con:
            return con.execute(GROUP_BY).fetchall()

    result["stats"], _ = timed(stats, repeat)
    result["group_by"], _ = timed(group_by, repeat)
    if lineage_id:
        result["lineage"], steps = timed(lambda: lake.lineage(lineage_id), repeat)
        assert steps[-1].kind == "text", steps
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS rows")
    args = parser.parse_args()
    os.environ.setdefault("PERSONAHUB_CACHE", str(Path(tempfile.mkdtemp()) / "none.sqlite"))

    big = million(args.rows)
    first_generation = big[2][2]["generations"]["row_id"][0]  # day 1's generated rows: a 6-hop chain
    workloads = {"demo": (demo_writes(), None), f"{args.rows:,} personas": (big, first_generation)}

    server = None
    if not args.no_s3:
        from tests.support.servers import SeaweedS3

        server = SeaweedS3().__enter__()
        os.environ.update(server.env)
    results = []
    with tempfile.TemporaryDirectory() as warm:  # load deltalake and DuckDB before anything is timed
        for kind in (ParquetSliceLake, Lake):
            first_stage = demo_writes()[0][2]
            kind(Path(warm) / kind.__name__).write_many(first_stage, producer="w", partition="2026-11-20")
    try:
        for name, (workload, lineage_id) in workloads.items():
            for backend, kind in BACKENDS.items():
                if kind is None and server is None:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    where = server.url(f"bench-{time.time_ns()}") if kind is None else tmp
                    lake = (kind or Lake)(where)
                    results.append((name, backend, measure(lake, workload, args.repeat, lineage_id)))
                    print(f"  {name} / {backend}: done", file=sys.stderr)
    finally:
        if server is not None:
            server.__exit__(None, None, None)

    print(f"\nlake storage, same run (median of {args.repeat} for queries; ratios against Parquet slices)\n")
    print("| workload | storage | write s | stats s | GROUP BY s | lineage s |")
    print("|---|---|---:|---:|---:|---:|")
    base: dict[str, dict[str, float]] = {}
    for name, backend, r in results:
        b = base.setdefault(name, r)
        cells = [
            "–" if key not in r else f"{r[key]:.3f}" + ("" if b is r else f" ({r[key] / b[key]:.2f}×)")
            for key in ("write", "stats", "group_by", "lineage")
        ]
        print(f"| {name} | {backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
