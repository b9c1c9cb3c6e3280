"""What SQL over the lake costs: every query's DuckDB profile is read back and its files opened and
rows scanned are counted per process (:func:`lake_reads`), so a test or benchmark can hold a daily step to
the reads of its own day."""

from __future__ import annotations

import json

import duckdb

_READS = {"rows": 0, "files": 0}  # what DuckDB scanned for lake queries in this process


def lake_reads() -> dict[str, int]:
    """What the lake's queries read in this process so far, from DuckDB's profile of each query:
    ``files`` — table files opened (after partition pruning), and ``rows`` — rows the scans produced
    (after the filters pushed into them). A daily step's difference is what it read: the measure that
    shows a step reading history (``benchmarks/nights.py``). Files count what a filter pushed into a
    scan hides from rows: the files must still be opened and their filtered column read."""
    return dict(_READS)


def _files_read(node: dict) -> int:
    own = int((node.get("extra_info") or {}).get("Total Files Read", 0) or 0)
    return own + sum(_files_read(child) for child in node.get("children", []))


class Metered:
    """A DuckDB connection that adds what each query scanned to :func:`lake_reads`. The profile of
    the last finished query is collected before the next one starts, after a fetch, and at close."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con, self._seen = con, None

    def __getattr__(self, name: str):
        return getattr(self._con, name)

    def _collect(self) -> None:
        try:
            info = self._con.get_profiling_information(format="json")
        except duckdb.Error:  # no query profiled yet
            return
        if info != self._seen:
            self._seen = info
            profile = json.loads(info)
            _READS["rows"] += int((profile.get("query") or profile).get("total_rows_scanned", 0) or 0)
            operators = profile.get("operator") or []
            for op in operators if isinstance(operators, list) else [operators]:
                _READS["files"] += _files_read(op)

    def execute(self, *args, **kwargs):
        self._collect()
        self._con.execute(*args, **kwargs)
        return self

    def sql(self, *args, **kwargs):
        self._collect()
        return self._con.sql(*args, **kwargs)

    def fetchall(self):
        rows = self._con.fetchall()
        self._collect()
        return rows

    def fetchone(self):
        row = self._con.fetchone()
        self._collect()
        return row

    def pl(self):
        frame = self._con.pl()
        self._collect()
        return frame

    def close(self) -> None:
        self._collect()
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
