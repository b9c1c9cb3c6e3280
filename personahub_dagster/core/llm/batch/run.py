"""Provider batch APIs: the same requests, answered within the provider's window at half the price.

OpenAI's Batch API (and every provider litellm batches with, :mod:`.provider`) takes a JSONL file of
requests and returns a JSONL file of answers within 24 h, billed at 50%. A nightly hub growth does not
need answers in seconds, so a stage in ``batch`` mode:

1. looks every request up in the response cache (a batch never asks for what was paid for);
2. writes the misses as batch input files, split at the provider's limits (requests and bytes per
   file), uploads and submits them, and **records the batch ids in the lake before waiting**
   (``llm_batches/<stage>-<digest>.json``: the digest is over all the stage's request hashes, so the
   same stage on the same input finds the same record);
3. polls; answers go into the same response cache (and the call journal, at the batch price) as each
   batch ends, so a later online run, or a re-materialization, pays nothing.

A run killed while waiting resumes by polling the recorded batches, never by submitting them again.
An expired or cancelled batch keeps the answers it has, and only the missing requests are submitted
again. Per-request errors inside a batch come back as errors (the stage makes them rejects, or asks
them online: ``on_error``). An output file that cannot be read fails with the batch and line named,
after storing every answer that could be read.

Waiting is bounded (``max_wait_s``): past it :class:`BatchPending` is raised with the record saved —
the Dagster layer ends the run there (so no run and no pool slot is held for a day) and a sensor
re-runs the stage when the provider says the batches are done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.config.secrets import redact
from personahub_dagster.core.llm.batch.provider import BatchError, ProviderBatches
from personahub_dagster.core.llm.cache.records import CachedResponse, CallRecord
from personahub_dagster.core.storage.store import Store

BATCH_DISCOUNT = 0.5  # OpenAI Batch API and Anthropic Message Batches: half the online price
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
STATE_FOLDER = "llm_batches"
MAX_EXPIRED = 3  # batches ending expired/cancelled before the stage gives up resubmitting


class BatchPending(RuntimeError):
    """Batches are still running after ``max_wait_s``; their record is saved, nothing is lost."""

    def __init__(self, message: str, batch_ids: list[str]):
        super().__init__(message)
        self.batch_ids = batch_ids


@dataclass(frozen=True)
class BatchSettings:
    poll_s: float = 30.0
    max_wait_s: float | None = None  # None: wait until the batches end
    max_requests: int = 50_000  # per batch (OpenAI's limit)
    max_bytes: int = 190 * 1024 * 1024  # per input file (OpenAI: 200 MB)
    completion_window: str = "24h"


@dataclass
class BatchOutcome:
    answers: dict[str, CachedResponse] = field(default_factory=dict)  # request hash → answer
    errors: dict[str, str] = field(default_factory=dict)  # request hash → the provider's error
    batch_ids: list[str] = field(default_factory=list)
    submitted: int = 0  # requests submitted by this call (0 when it only polled earlier batches)
    cost_usd: float = 0.0


def split(lines: list[bytes], max_requests: int, max_bytes: int) -> list[list[bytes]]:
    """Input lines in files no larger than the provider's limits, in order."""
    files: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        if files[-1] and (len(files[-1]) >= max_requests or size + len(line) > max_bytes):
            files.append([])
            size = 0
        files[-1].append(line)
        size += len(line)
    return [f for f in files if f]


class BatchRun:
    """Answers ``bodies`` (request hash → chat body) through the batch API, resumably."""

    def __init__(
        self,
        api: ProviderBatches,
        store: Store,
        stage: str,
        all_hashes: list[str],
        settings: BatchSettings,
        store_answers: Callable[[dict[str, CachedResponse], dict[str, float | None]], None],
        price: Callable[[int | None, int | None], float | None],
        log: Callable[[str], None] = print,
        context: dict[str, str] | None = None,
    ):
        self.api, self.store, self.stage, self.settings = api, store, stage, settings
        self.key = f"{stage}-{digest(sorted(set(all_hashes)))[:16]}.json"
        self.store_answers, self.price, self.log = store_answers, price, log
        self.context = dict(context or {})

    # -- the record in the lake ---------------------------------------------------------------
    def load(self) -> dict:
        if self.store.exists(self.key):
            return json.loads(self.store.get(self.key))
        return {"stage": self.stage, "context": self.context, "batches": []}

    def save(self, record: dict) -> None:
        self.store.put(self.key, json.dumps(record, indent=1).encode())

    def forget(self) -> None:
        """Every answer is in the cache: the record has done its work."""
        if self.store.exists(self.key):
            self.store.delete([self.key])

    # -- the run -------------------------------------------------------------------------------
    def run(self, bodies: dict[str, dict]) -> BatchOutcome:
        out = BatchOutcome()
        record = self.load()
        for b in record["batches"]:  # a resumed run: earlier batches' per-request errors stand
            if b["status"] in TERMINAL:
                out.errors.update({h: e for h, e in b.get("errors", {}).items() if h in bodies})
        started = time.monotonic()
        while True:
            active = [b for b in record["batches"] if b["status"] not in TERMINAL]
            asked = {h for b in active for h in b["hashes"]}
            missing = [h for h in bodies if h not in out.answers and h not in out.errors and h not in asked]
            if missing:
                rounds = sum(1 for b in record["batches"] if b["status"] in ("expired", "cancelled"))
                if rounds > MAX_EXPIRED:
                    raise BatchError(
                        f"{self.stage}: {rounds} batches ended expired or cancelled; {len(missing)} requests "
                        "still unanswered (the answers received are stored): check the provider's queue"
                    )
                self._submit(record, missing, bodies, out)
                continue
            if not active:
                break
            self._wait(record, active, out, started)
        out.batch_ids = [b["id"] for b in record["batches"]]
        return out

    def _submit(self, record: dict, hashes: list[str], bodies: dict[str, dict], out: BatchOutcome) -> None:
        lines = [
            json.dumps(
                {"custom_id": h, "method": "POST", "url": "/v1/chat/completions", "body": bodies[h]},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for h in hashes
        ]
        for part in split(lines, self.settings.max_requests, self.settings.max_bytes):
            chunk = [json.loads(line)["custom_id"] for line in part]
            file_id = self.api.upload(b"".join(part), f"{self.key[:-5]}-{len(record['batches'])}.jsonl")
            batch = self.api.create(file_id, self.settings.completion_window, {"stage": self.stage})
            record["batches"].append({"id": batch["id"], "status": batch["status"], "hashes": chunk})
            self.save(record)  # before any waiting: a run killed from here on polls, never resubmits
            out.submitted += len(chunk)
            self.log(f"{self.stage}: submitted batch {batch['id']} ({len(chunk)} requests)")

    def _wait(self, record: dict, active: list[dict], out: BatchOutcome, started: float) -> None:
        last_log = 0.0
        while True:
            counts = {"completed": 0, "failed": 0, "total": 0}
            for b in active:
                info = self.api.retrieve(b["id"])
                for k in counts:
                    counts[k] += int((info.get("request_counts") or {}).get(k) or 0)
                if info["status"] in TERMINAL:
                    self._collect(b, info, out)
                    b["status"] = info["status"]
                    self.save(record)
                    return
            now = time.monotonic()
            if now - last_log >= 30 or last_log == 0.0:
                ids = ", ".join(b["id"] for b in active)
                self.log(
                    f"{self.stage}: batches {ids}: {counts['completed']} done, {counts['failed']} failed "
                    f"of {counts['total']}"
                )
                last_log = now
            if self.settings.max_wait_s is not None and now - started > self.settings.max_wait_s:
                ids = [b["id"] for b in active]
                raise BatchPending(
                    f"{self.stage}: batches {', '.join(ids)} still running after "
                    f"{self.settings.max_wait_s:.0f} s; their ids are saved in the lake "
                    f"({STATE_FOLDER}/{self.key}): the next run of this stage collects them",
                    ids,
                )
            time.sleep(self.settings.poll_s)

    def _collect(self, batch: dict, info: dict, out: BatchOutcome) -> None:
        """Store a finished batch's answers; note its per-request errors."""
        status, batch_id = info["status"], batch["id"]
        if status == "failed" and not info.get("output_file_id"):
            errors = (info.get("errors") or {}).get("data") or []
            reason = "; ".join(str(e.get("message")) for e in errors[:3]) or "no reason given"
            raise BatchError(f"{self.stage}: batch {batch_id} was rejected by the provider: {reason}")
        wanted = set(batch["hashes"])
        answers: dict[str, CachedResponse] = {}
        costs: dict[str, float | None] = {}
        bad: str | None = None
        for file_key in ("output_file_id", "error_file_id"):
            if not info.get(file_key):
                continue
            for n, line in enumerate(self.api.content(info[file_key]).splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    h, answer, error = _parse_line(line)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    bad = bad or f"line {n} of {file_key.removesuffix('_id')} {info[file_key]} ({exc})"
                    continue
                if h not in wanted:
                    continue
                if answer is not None:
                    answers[h] = answer
                    costs[h] = self.price(answer.prompt_tokens, answer.completion_tokens)
                else:
                    reason = redact(f"batch {batch_id}: {error}")
                    out.errors[h] = batch.setdefault("errors", {})[h] = reason
        if answers:
            self.store_answers(answers, costs)
            out.answers.update(answers)
            out.cost_usd += sum(c or 0.0 for c in costs.values())
        if bad:
            raise BatchError(
                f"{self.stage}: batch {batch_id}: cannot read {bad}; the {len(answers)} answers read from "
                "it are stored, the rest are not"
            )
        lost = wanted - set(answers) - set(out.errors)
        if lost:  # expired, cancelled, or a provider that dropped lines: asked again, only these
            self.log(f"{self.stage}: batch {batch_id} ended {status} with {len(lost)} requests unanswered")


def _parse_line(line: bytes) -> tuple[str, CachedResponse | None, str | None]:
    item = json.loads(line)
    h = item["custom_id"]
    response = item.get("response") or {}
    if item.get("error") or response.get("status_code", 200) >= 400:
        err = item.get("error") or (response.get("body") or {}).get("error") or {}
        return h, None, str(err.get("message") if isinstance(err, dict) else err)[:500]
    body = response["body"]
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    content = choice["message"].get("content")
    if content is None:
        raise ValueError("an answer without content")
    answer = CachedResponse(
        content, choice.get("finish_reason"), usage.get("prompt_tokens"), usage.get("completion_tokens")
    )
    return h, answer, None


def journal_rows(
    answers: dict[str, CachedResponse],
    costs: dict[str, float | None],
    stage: str,
    model: str,
    run_id: str,
) -> tuple[list[tuple[str, str, CachedResponse]], list[CallRecord]]:
    """Cache rows and journal rows for a batch's answers: ``mode`` batch, and ``latency_s`` NULL — a
    batch has no per-request latency."""
    responses = [(h, model, a) for h, a in answers.items()]
    calls = [
        CallRecord(
            h,
            stage,
            model,
            1,
            a.prompt_tokens,
            a.completion_tokens,
            costs.get(h),
            None,
            "ok",
            None,
            run_id,
            mode="batch",
        )
        for h, a in answers.items()
    ]
    return responses, calls
