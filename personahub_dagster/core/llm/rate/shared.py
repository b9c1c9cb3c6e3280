"""One key's rate limit, shared live by every worker that uses it: a row in the response cache's database.

A static split (each of N workers pacing at ``1/N`` of the key) wastes what an idle worker leaves and
needs everyone re-configured when a worker joins. Every worker of a deployment already reaches the
cache's database — Postgres for a team, SQLite for the processes of one machine — so the key's token
buckets and its AIMD factor live there (``rate_limits``,
:func:`~personahub_dagster.core.llm.cache.ledger.rate_ddl`), and workers draw from them in leases of a tenth
of a second's allowance (:data:`~.pacer.LEASE_S`): about ten short transactions a second per worker, whatever
its request rate.
"""

from __future__ import annotations

import time

from personahub_dagster.core.llm.rate.pacer import _IDLE_RESET_S, _MIN_FACTOR, _STEP, Grant


class SharedRate:
    """One key's request and token buckets and its AIMD factor, in one row of the response cache's
    database (``rate_limits``), drawn from by every worker that uses the key.

    A draw is one short transaction that locks the row, refills the buckets for the time since the
    last draw (by the database's clock, one clock for every machine), hands out what is there up to
    what was asked, and grows the factor by the successes the worker reports (one ``_STEP`` per round
    of a second's allowance of answers). The key's ``rpm``/``tpm`` are written by each draw: the
    latest configuration wins, and nobody else's changes."""

    def __init__(self, cache, name: str, rpm: float | None, tpm: float | None):
        self.cache, self.name, self.rpm, self.tpm = cache, name, rpm, tpm
        self._offset = 0.0  # database clock − this machine's time.time(), from the last draw

    def draw(self, requests: float, tokens: float, successes: int) -> Grant:
        with self.cache.transaction() as tx:
            grant = _draw(tx, self.name, self.rpm, self.tpm, requests, tokens, successes)
        self._offset = grant.clock - time.time()
        return grant

    def cut(self, sent_at_wall: float) -> float | None:
        """Halve the shared factor, unless a cut came after ``sent_at_wall`` (this machine's time):
        the new factor, or None when the episode was already cut."""
        with self.cache.transaction() as tx:
            return _cut(tx, self.name, sent_at_wall + self._offset)

    def clock(self) -> float:
        """Now, by the database's clock (as of the last draw)."""
        return time.time() + self._offset


def _draw(
    tx, name: str, rpm: float | None, tpm: float | None, want_r: float, want_t: float, ok: int
) -> Grant:
    q = tx.q
    select = f"SELECT requests, tokens, stamp, factor, {tx.clock} FROM rate_limits WHERE name = {q}"
    rows = tx.query(select + tx.for_update, (name,))
    if not rows:  # the key's first worker: buckets half full, as a provider's start full
        tx.query(
            f"INSERT INTO rate_limits VALUES ({q}, {q}, {q}, {q}, {q}, {tx.clock}, 1.0, 0.0) "
            "ON CONFLICT (name) DO NOTHING",
            (name, rpm, tpm, (rpm or 0) / 120, (tpm or 0) / 120),
        )
        rows = tx.query(select + tx.for_update, (name,))
    level_r, level_t, stamp, factor, now = (float(v) for v in rows[0])
    if now - stamp > _IDLE_RESET_S:  # the key has been idle: an old episode's cut says nothing now
        factor = 1.0
    rate_r, rate_t = (rpm or 0) / 60, (tpm or 0) / 60
    round_size = max(1.0, (rate_r or 10.0) * factor)  # a second's allowance of answers
    factor = min(1.0, factor + _STEP * ok / round_size)
    elapsed = max(0.0, now - stamp)
    waits, granted = [], []
    for rate, level, want in ((rate_r, level_r, want_r), (rate_t, level_t, want_t)):
        if not rate:
            granted.append((want, 0.0))
            continue
        cap = max(rate * factor, 1.0)
        level = min(cap, level + elapsed * rate * factor)
        give = max(0.0, min(want, level))
        if give < want and level >= cap:  # more than a second's worth: wait for a full bucket, overdraw
            give = want
        waits.append(0.0 if give >= want else (min(want, cap) - level) / (rate * factor))
        granted.append((give, level - give))
    (give_r, left_r), (give_t, left_t) = granted
    tx.query(
        f"UPDATE rate_limits SET requests = {q}, tokens = {q}, stamp = {q}, factor = {q}, rpm = {q}, "
        f"tpm = {q} WHERE name = {q}",
        (left_r, left_t, now, factor, rpm, tpm, name),
    )
    return Grant(give_r, give_t, factor, max(waits, default=0.0), now)


def _cut(tx, name: str, sent_at: float) -> float | None:
    q = tx.q
    rows = tx.query(
        f"SELECT factor, last_cut, {tx.clock} FROM rate_limits WHERE name = {q}{tx.for_update}", (name,)
    )
    if not rows or float(rows[0][1]) > sent_at:
        return None
    factor = max(_MIN_FACTOR, float(rows[0][0]) / 2)
    tx.query(  # and no burst right after a cut: what the buckets hold is spent
        f"UPDATE rate_limits SET factor = {q}, last_cut = {q}, "
        "requests = CASE WHEN requests > 0 THEN 0 ELSE requests END, "
        f"tokens = CASE WHEN tokens > 0 THEN 0 ELSE tokens END WHERE name = {q}",
        (factor, float(rows[0][2]), name),
    )
    return factor
