"""The call journal mirrored into the lake's ``llm_calls`` table, block by block past the last copy:
a copy rewrites at most the last block the table holds plus new ones, so it costs the calls made since,
and two writers or a retry make the same table."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pyarrow.dataset as pads

from personahub_dagster.core.lake.schemas import PRODUCER, conform

JOURNAL_BLOCK = 20_000  # journal rows per slice of llm_calls: a copy rewrites at most one block


class JournalMirror:
    """The call journal's copy in ``llm_calls``, kept by :class:`~personahub_dagster.core.lake.tables.Lake`
    (a base of it)."""

    def _mirror_call_journal(self) -> None:
        """Append the calls journaled since the last copy to ``llm_calls`` — O(calls since), whatever
        the journal's length.

        The journal's rows are numbered in commit order and grouped in blocks of
        :data:`JOURNAL_BLOCK`; each block is one slice of the table (``_producer = journal.<block>``),
        written whole from the journal. A copy rewrites the last block the table holds (if it grew)
        and adds the blocks after it, so it is idempotent: two writers, or a retry after a failure,
        write the same rows. Only a lake that opened the cache copies anything. A table mirrored by
        an earlier release (one ``gateway`` slice) is copied afresh once, then grows by blocks."""
        if self._journal is None:
            return
        last = self._journal.journal_last_seq()
        if not last:
            return
        held = self._journal_blocks()
        legacy = "gateway" in held
        blocks = {int(k.split(".")[1]): n for k, n in held.items() if k.startswith("journal.")}
        start = 0 if legacy or not blocks else max(blocks)
        fresh = self._journal.calls_between(start * JOURNAL_BLOCK + 1, last)
        for (block,), rows in fresh.group_by((pl.col("seq") - 1) // JOURNAL_BLOCK, maintain_order=True):
            if blocks.get(block) == rows.height and not legacy:
                continue  # the table holds this block whole already
            self.committed["llm_calls"] = self._replace(
                "llm_calls", self._journal_block(block, rows), f"journal.{block:06d}", "all"
            )
        if legacy:
            self._open("llm_calls").delete(f"{PRODUCER} = 'gateway'")

    def _journal_block(self, block: int, rows: pl.DataFrame) -> Callable[[], pl.DataFrame]:
        """The block's rows: first those already read, then — for a retry after a commit lost to
        another writer, which may have copied a longer block — read again from the journal."""
        first = [rows]

        def read() -> pl.DataFrame:
            fresh = (
                first.pop()
                if first
                else self._journal.calls_between(block * JOURNAL_BLOCK + 1, (block + 1) * JOURNAL_BLOCK)
            )
            return conform("llm_calls", fresh.drop("seq"))

        return read

    def _journal_blocks(self) -> dict[str, int]:
        """Rows per ``_producer`` slice of ``llm_calls``, from the Delta log (no data file is read)."""
        actions = self._files_meta("llm_calls")
        if actions.is_empty():
            return {}
        by = actions.group_by(f"partition.{PRODUCER}").agg(pl.col("num_records").sum())
        return dict(by.iter_rows())

    def calls_of_run(self, run_id: str) -> pl.DataFrame:
        """The ``llm_calls`` rows of one run, reading the journal's blocks from the newest back to the
        first that holds none of the run's calls (past the run's start): what a night's report reads is
        its run's calls and one block, not the journal."""
        dt = self._open("llm_calls")
        held = sorted((b for b in self._journal_blocks() if b.startswith("journal.")), reverse=True)
        frames, misses = [], 0
        for block in held:
            dataset = dt.to_pyarrow_dataset(file_pruning_predicate=[(PRODUCER, "=", block)])
            found = pl.from_arrow(dataset.to_table(filter=pads.field("run_id") == run_id))
            if found.is_empty():
                misses += 1
                if frames or misses >= 2:  # before the run's first call (or it made none)
                    break
            else:
                frames.append(conform("llm_calls", found.drop(PRODUCER)))  # an older lake: no mode
        return conform("llm_calls", pl.concat(frames) if frames else pl.DataFrame())
