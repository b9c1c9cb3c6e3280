"""Lineage over the lake: a generated row back through its personas to the text it came from, and
the check that every row's chain is whole. Walked within the day first; only rows whose chain leaves
the day look at other days."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb

from personahub_dagster.core.config.ids import kind_of
from personahub_dagster.core.lake.time_travel import AsOf


@dataclass(frozen=True)
class LineageStep:
    """One link of a lineage chain, from a generated row back to the text it came from."""

    kind: str  # generation | persona | text
    id: str
    text: str
    detail: Mapping[str, object]


class LineageQueries:
    """Lineage queries of :class:`~personahub_dagster.core.lake.tables.Lake` (a base of it)."""

    def lineage(
        self, entity_id: str, as_of: AsOf | None = None, partitions: Iterable[str] | None = None
    ) -> list[LineageStep]:
        """The chain from a generated row, a preference pair (or a persona) back through parent personas
        to its source text.

        One recursive query walks ``parent_persona_id`` links; relation-derived personas reach their
        Text-to-Persona root in at most ``hop`` steps. ``partitions``: the days to look in first (a
        daily step's own day: nothing else is read when the chain is there), then everywhere.
        """
        if partitions is not None:
            try:
                return self._lineage(entity_id, as_of, partitions)
            except KeyError:
                pass
        return self._lineage(entity_id, as_of, None)

    def _lineage(
        self, entity_id: str, as_of: AsOf | None, partitions: Iterable[str] | None
    ) -> list[LineageStep]:
        steps: list[LineageStep] = []
        kind = kind_of(entity_id)
        extra = {"pair": ["preference_pairs"], "turn": ["conversation_turns"]}.get(kind or "", [])
        with self.connect(as_of, ["generations", "personas", "source_texts", *extra], partitions) as con:
            persona_id = entity_id
            if kind == "turn":
                row = con.execute(
                    "SELECT turn_id, content, role, turn, conversation_id FROM conversation_turns "
                    "WHERE turn_id = ?",
                    [entity_id],
                ).fetchone()
                if row is None:
                    raise KeyError(f"no conversation turn {entity_id}")
                detail = {"role": row[2], "turn": row[3], "conversation": row[4]}
                steps.append(LineageStep("turn", row[0], row[1], detail))
                kind, entity_id = "generation", row[4]
            if kind == "pair":
                row = con.execute(
                    "SELECT pair_id, data_type, prompt, judge, reason, chosen_row_id, rejected_row_id, "
                    "persona_id FROM preference_pairs WHERE pair_id = ?",
                    [entity_id],
                ).fetchone()
                if row is None:
                    raise KeyError(f"no preference pair {entity_id}")
                detail = {
                    "data_type": row[1],
                    "judge": row[3],
                    "reason": row[4],
                    "chosen": row[5],
                    "rejected": row[6],
                }
                steps.append(LineageStep("pair", row[0], row[2], detail))
                persona_id = row[7]
            elif kind == "generation":
                row = con.execute(
                    "SELECT row_id, data_type, prompting_mode, persona_id, output, model "
                    "FROM generations WHERE row_id = ?",
                    [entity_id],
                ).fetchone()
                if row is None:
                    raise KeyError(f"no generated row {entity_id}")
                steps.append(
                    LineageStep(
                        "generation",
                        row[0],
                        row[4],
                        {"data_type": row[1], "prompting_mode": row[2], "model": row[5]},
                    )
                )
                persona_id = row[3]
            elif kind == "text":
                return self._text_step(con, entity_id)
            elif kind != "persona":
                raise KeyError(f"not a lake id: {entity_id!r}")
            chain = con.execute(
                """
                WITH RECURSIVE chain(persona_id, depth) AS (
                    SELECT ?::VARCHAR, 0
                    UNION ALL
                    SELECT p.parent_persona_id, c.depth + 1
                    FROM chain c JOIN personas p ON p.persona_id = c.persona_id
                    WHERE p.parent_persona_id IS NOT NULL AND c.depth < 64
                )
                SELECT p.persona_id, p.persona, p.method, p.perspective, p.relation, p.hop,
                       p.source_text_id, p.model
                FROM chain c JOIN personas p USING (persona_id)
                ORDER BY c.depth
                """,
                [persona_id],
            ).fetchall()
            if not chain:
                raise KeyError(f"no persona {persona_id} in the lake")
            for pid, text, method, perspective, relation, hop, _src, model in chain:
                detail = {"method": method, "hop": hop, "model": model}
                detail.update(
                    {"relation": relation} if method == "relation" else {"perspective": perspective}
                )
                steps.append(LineageStep("persona", pid, text, detail))
            root = chain[-1]
            if root[2] != "text":
                raise KeyError(f"persona chain of {entity_id} is broken at {root[0]}")
            steps.extend(self._text_step(con, root[6]))
        return steps

    def broken_lineage(self, partition: str | None = None) -> list[str]:
        """Generated rows (of ``partition``, or all) whose chain does not reach a source text: a persona
        or parent persona missing from the lake, a chain whose root is not a Text-to-Persona persona,
        or a source text that is not there. Empty when every row walks back — the asset check.

        A day's rows are walked within the day first (personas and texts of that day only: what a
        night's check reads does not grow with the lake); only rows whose chain leaves the day — made
        from another day's personas — are walked again over every day."""
        if partition is None:
            return self._broken_lineage(None, None)
        local = self._broken_lineage(partition, [partition])
        return self._broken_lineage(partition, None, local) if local else []

    def _broken_lineage(
        self, partition: str | None, within: list[str] | None, rows: list[str] | None = None
    ) -> list[str]:
        where = "WHERE g.partition = ?" if partition is not None else ""
        params: list[object] = [partition] if partition is not None else []
        if rows is not None:
            where += " AND g.row_id IN (SELECT unnest(?))"
            params.append(rows)
        sql = f"""
            WITH RECURSIVE chain(row_id, persona_id, depth) AS (
                SELECT g.row_id, g.persona_id, 0 FROM generations g {where}
                UNION ALL
                SELECT c.row_id, p.parent_persona_id, c.depth + 1
                FROM chain c JOIN personas p ON p.persona_id = c.persona_id
                WHERE p.parent_persona_id IS NOT NULL AND c.depth < 64
            ),
            steps AS (
                SELECT c.row_id, c.depth, p.persona_id IS NOT NULL AS found, p.method, p.source_text_id
                FROM chain c LEFT JOIN (SELECT DISTINCT persona_id, method, source_text_id FROM personas) p
                  USING (persona_id)
            ),
            roots AS (
                SELECT row_id, arg_max(method, depth) AS method, arg_max(source_text_id, depth) AS text_id,
                       bool_and(found) AS all_found
                FROM steps GROUP BY row_id
            )
            SELECT r.row_id FROM roots r JOIN generations g USING (row_id)
            WHERE NOT r.all_found OR r.method IS DISTINCT FROM 'text'
               OR r.text_id IS DISTINCT FROM g.source_text_id
               OR NOT EXISTS (SELECT 1 FROM source_texts t WHERE t.text_id = r.text_id)
            ORDER BY 1
        """
        with self.connect(tables=["generations", "personas", "source_texts"], partitions=within) as con:
            return [r[0] for r in con.execute(sql, params).fetchall()]

    @staticmethod
    def _text_step(con: duckdb.DuckDBPyConnection, text_id: str) -> list[LineageStep]:
        row = con.execute(
            "SELECT text_id, text, source_uri, doc_id, partition, license, source_url FROM source_texts "
            "WHERE text_id = ?",
            [text_id],
        ).fetchone()
        if row is None:
            raise KeyError(f"no source text {text_id}")
        return [
            LineageStep(
                "text",
                row[0],
                row[1],
                {
                    "source_uri": row[2],
                    "doc_id": row[3],
                    "partition": row[4],
                    "license": row[5] or "unknown",  # a text ingested before licences were kept
                    "source_url": row[6],
                },
            )
        ]
