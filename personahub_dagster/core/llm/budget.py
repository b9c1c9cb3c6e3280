"""One budget per run, whatever the number of stages, shards and workers spending it.

A run's cap (``max_run_tokens``, ``max_run_cost_usd``) is checked where the journal lives — the
response cache, SQLite on one machine, Postgres for a team — not in each process's memory: two shards
of one run that each read "nothing spent yet" at start would each spend the whole cap. The books are
two tables (:func:`~.cache.ledger.ledger_ddl`):

* ``run_spend`` — tokens and dollars each run has spent, advanced by the same transaction that
  journals the calls (so it always equals the journal's sum, which is where it starts from);
* ``run_holds`` — what each live gateway of the run holds back for the requests it has in flight: the
  worst case of each (its prompt estimate plus ``max_tokens``, and their price at the model's rates).

A request is sent only when spent + every live hold + its own worst case fits the cap, decided in one
transaction that locks the run's row (``FOR UPDATE`` on Postgres, a write transaction on SQLite): no
two workers can take the same last room, so together they stay under the cap, short only by how far
a request's real tokens pass its estimate. When only holds stand in the way, the request waits for
them to end (answers mostly cost less than their worst case); when the spend alone leaves no room,
the run's budget is spent and the request comes back ``skipped``. A hold is given back by the
transaction that journals the call's answer. A live gateway renews its hold every ``HOLD_RENEW_S``
(10 s); a worker killed mid-request leaves its hold behind, and it lapses at ``expires_at`` (three
renewals later), so a resumed run waits at most that long for a dead one's room.

The budget is a run's, or a *scope's* (``budget_id``): the Dagster layer gives the shard runs of one
night one scope (the ``personahub/budget`` tag the nightly schedule sets), so ``max_run_cost_usd`` is
what the night may spend, however it is cut.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from personahub_dagster.core.llm.cache.ledger import Admission, Hold
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.results import LLMRequest

WAIT_S = 0.25  # between admissions while requests in flight hold the room a request needs


@dataclass
class RunBudget:
    """This gateway's side of its run's budget: what it holds now, and why it stopped, if it did."""

    cache: ResponseCache
    run_id: str
    max_tokens: int | None
    max_cost: float | None
    hold_s: float  # how long a hold outlives its last renewal (a dead worker's lapses then)
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    tokens: int = 0  # held for requests in flight
    cost: float = 0.0
    exhausted: str | None = None

    def hold(self) -> Hold:
        """The hold as it should stand now; every admission and every journal commit renews it."""
        return Hold(self.run_id, self.holder, self.tokens, self.cost, time.time() + self.hold_s)

    async def take(self, tokens: int, cost: float) -> bool:
        """Take room for one request of up to ``tokens`` and ``cost``. While only what is in flight
        stands in the way, wait: those requests end (mostly below their worst case) and a dead
        worker's holds lapse. False once the run's spend alone leaves no room — and from then on
        (a smaller request later must not jump the queue of a stage)."""
        while self.exhausted is None:
            books = self.cache.admit(self.hold(), tokens, cost, self.max_tokens, self.max_cost)
            if books.admitted:
                self.tokens += tokens
                self.cost += cost
                return True
            if books.final:
                self.exhausted = self._why(books, tokens, cost)
                break
            await asyncio.sleep(WAIT_S)
        return False

    def _why(self, books: Admission, tokens: int, cost: float) -> str:
        spent, held = books.spent_tokens, books.held_tokens
        if self.max_tokens is not None and spent + tokens > self.max_tokens:
            return (
                f"run token budget {self.max_tokens} reached ({spent} spent, {held} in flight, next "
                f"request needs up to {tokens})"
            )
        return (
            f"run cost budget ${self.max_cost:g} reached (${books.spent_cost:.4f} spent, "
            f"${books.held_cost:.4f} in flight, next request up to ${cost:.4f})"
        )

    def settle(self, tokens: int, cost: float) -> None:
        """A request ended: its room is no longer held (the journal commit that follows says so in
        the books, in the same transaction as its spend)."""
        self.tokens = max(0, self.tokens - tokens)
        self.cost = max(0.0, self.cost - cost)


HOLD_RENEW_S = 10.0  # a live gateway renews its budget hold this often; a dead one's lapses in 3×


class BudgetHolds:
    """What the gateway (a subclass) does with the run budget: finds it, holds each request's worst
    case while it is in flight, renews the hold while it runs."""

    def _budget(self) -> RunBudget | None:
        """The run's budget, shared through the cache with every stage and worker of the run (or of
        ``budget_scope``: the runs that share one, the shards of a night)."""
        cfg = self.config
        if cfg.max_run_tokens is None and cfg.max_run_cost_usd is None:
            return None
        scope = cfg.budget_scope or self.run_id
        return RunBudget(self.cache, scope, cfg.max_run_tokens, cfg.max_run_cost_usd, 3 * HOLD_RENEW_S)

    async def _renew(self, budget: RunBudget) -> None:
        """Renew this gateway's hold while it runs, so that only a dead worker's hold lapses."""
        while True:
            await asyncio.sleep(HOLD_RENEW_S)
            if budget.tokens or budget.cost:
                self.cache.put_many([], [], budget.hold())

    def _reserve_cost(self, r: LLMRequest, tokens: int) -> float:
        """Worst-case dollars of a request: its worst-case tokens at the model's prices (0 unpriced)."""
        if self.config.max_run_cost_usd is None:
            return 0.0
        if self._pricer is None:
            from personahub_dagster.core.llm.transports import Pricer

            self._pricer = Pricer(self.config.model)
        out = int(self.request_params(r.params).get("max_tokens", self.config.max_tokens))
        return self._pricer(None, max(0, tokens - out), out) or 0.0

    def _reserve(self, r: LLMRequest) -> int:
        """Worst-case tokens of a request: its prompt (about 4 characters a token) plus max_tokens."""
        prompt = sum(len(m.get("content") or "") for m in r.messages) // 4 + 8 * len(r.messages)
        return prompt + int(self.request_params(r.params).get("max_tokens", self.config.max_tokens))
