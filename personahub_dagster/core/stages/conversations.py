"""Multi-turn conversations with the persona as the user simulator (UltraChat's idea, driven by a
persona): the persona opens with a need, the assistant answers, the persona follows up — up to ``turns``
exchanges, all conversations of a run advancing a turn at a time through the gateway.

A conversation is kept as a ``generations`` row (``data_type`` ``conversation``: the transcript, the
first request as its prompt) and one ``conversation_turns`` row per message (``conversation_id``,
``turn``, ``role``, ``content``), each turn walking back through its conversation to the persona and
the text. The rules that end one, with the reason in ``rejects`` where it is thrown away:

* the user writes DONE: the conversation ends there (kept, if it had an exchange);
* an empty turn: ``empty_turn``; a turn cut by the token limit keeps its complete sentences, and is
  ``truncated`` (with the turn) only when it has none;
* the user turning into the assistant ("As an AI…", "Certainly! Here is…"): ``user_became_assistant``;
* a message that repeats an earlier one of the same role: ``loop``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl

from personahub_dagster.core.config.ids import content_id
from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import GatewayStats, LLMRequest, LLMResult
from personahub_dagster.core.stages.parsing import clean_line, is_echo, normalize_for_match
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Answers, Parsed, Progress, reject_rows, run_stage
from personahub_dagster.core.stages.synthesis import trim_to_sentence

DATA_TYPE = "conversation"
ASSISTANT_VOICE = re.compile(
    r"^\W*(as an ai\b|i'?m an ai\b|i am an ai\b|certainly[!,.]|of course[!,.]|i'?d be (happy|glad) to help|"
    r"here (is|are) (a|an|the|some|your) )",
    re.IGNORECASE,
)
DONE = re.compile(r"^\W*(done|\[?end\]?)\W*$", re.IGNORECASE)


@dataclass
class Conversation:
    persona: dict
    messages: list[dict[str, str]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    ended: bool = False
    failed: str | None = None

    def transcript(self) -> str:
        return "\n".join(f"{m['role'].title()}: {m['content']}" for m in self.messages)

    def repeats(self, role: str, text: str) -> bool:
        earlier = [m["content"] for m in self.messages if m["role"] == role]
        key = normalize_for_match(text)
        return any(normalize_for_match(e) == key or is_echo(text, e, 0.9) for e in earlier)


@dataclass
class ConversationOutput:
    rows: pl.DataFrame  # generations
    turns: pl.DataFrame  # conversation_turns
    rejects: pl.DataFrame
    stats: GatewayStats


def _whole(res: LLMResult) -> str | None:
    """The message, or — cut by the token limit — its complete sentences (None if it has none): a
    turn that runs long still says what it had to, and a dialogue reads on from a whole sentence."""
    if res.finish_reason != "length":
        return res.content or ""
    return trim_to_sentence(res.content or "")


def _user_message(raw: str | None, talk: Conversation) -> tuple[str | None, str | None]:
    """The user's next message, ``None`` with no reason when the user is done, or the reason to drop."""
    text = (
        "\n".join(x for x in (clean_line(line) for line in (raw or "").splitlines()) if x).strip().strip('"')
    )
    if not text:
        return None, "empty_turn"
    if DONE.match(text):
        return None, None
    if ASSISTANT_VOICE.match(text):
        return None, "user_became_assistant"
    if talk.repeats("user", text):
        return None, "loop"
    return text, None


def conversations(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    user_template: PromptTemplate,
    answer_template: PromptTemplate,
    *,
    partition: str,
    turns: int = 3,
    stage: str = "conversations",
    progress: Progress | None = None,
) -> ConversationOutput:
    """Up to ``turns`` user–assistant exchanges for each persona (``persona_id``, ``persona``,
    ``source_text_id``)."""
    if turns < 1:
        raise ValueError(f"turns must be at least 1, got {turns}")
    talks = [Conversation(p) for p in personas.select("persona_id", "persona", "source_text_id").to_dicts()]
    answers, dropped = Answers(), []

    def drop(talk: Conversation, reason: str, k: int, raw: str | None, request_hash: str | None) -> None:
        talk.failed = f"{reason} at turn {k}"
        dropped.append(
            {
                "input_id": talk.persona["persona_id"],
                "request_hash": request_hash,
                "raw_output": raw,
                "reason": talk.failed,
            }
        )

    for k in range(turns):
        live = [t for t in talks if not t.ended and not t.failed]

        def user_requests(live=live, k=k) -> Iterator[LLMRequest]:
            for i, talk in enumerate(live):
                messages = user_template.render(persona=talk.persona["persona"], transcript=talk.transcript())
                key = f"user|{talk.persona['persona_id']}|{k}"
                yield LLMRequest(key, messages, dict(user_template.params), context=i)

        def parse_user(request: LLMRequest, res: LLMResult, live=live, k=k) -> Parsed:
            talk = live[request.context]
            content = _whole(res)
            if content is None:
                drop(talk, "truncated", k, res.content, res.request_hash)
                return {}, None
            text, reason = _user_message(content, talk)
            if reason is not None:
                drop(talk, reason, k, res.content, res.request_hash)
            elif text is None:
                talk.ended = True
            else:
                talk.messages.append({"role": "user", "content": text})
                talk.hashes.append(res.request_hash)
            return {}, None

        answers.merge(
            run_stage(gateway, user_requests(), parse_user, stage=f"{stage}.user", progress=progress)
        )
        asking = [t for t in live if not t.ended and not t.failed]

        def assistant_requests(asking=asking, k=k) -> Iterator[LLMRequest]:
            for i, talk in enumerate(asking):
                system = answer_template.system_message()
                key = f"assistant|{talk.persona['persona_id']}|{k}"
                yield LLMRequest(key, system + talk.messages, dict(answer_template.params), context=i)

        def parse_assistant(request: LLMRequest, res: LLMResult, asking=asking, k=k) -> Parsed:
            talk = asking[request.context]
            text = (_whole(res) or "").strip()
            if res.finish_reason == "length" and not text:
                drop(talk, "truncated", k, res.content, res.request_hash)
            elif not text:
                drop(talk, "empty_turn", k, res.content, res.request_hash)
            elif talk.repeats("assistant", text):
                drop(talk, "loop", k, res.content, res.request_hash)
            else:
                talk.messages.append({"role": "assistant", "content": text})
                talk.hashes.append(res.request_hash)
            return {}, None

        answers.merge(run_stage(gateway, assistant_requests(), parse_assistant, stage=f"{stage}.assistant"))

    rows, turn_rows, model = [], [], gateway.config.model
    for talk in talks:
        if talk.failed:
            continue
        if len(talk.messages) < 2:
            dropped.append(
                {
                    "input_id": talk.persona["persona_id"],
                    "reason": "no_exchange",
                    "raw_output": talk.transcript(),
                }
            )
            continue
        talk.messages = talk.messages[: len(talk.messages) // 2 * 2]  # end on the assistant's answer
        cid = content_id("generation", DATA_TYPE, talk.persona["persona_id"], *talk.hashes)
        p = talk.persona
        rows.append(
            {
                "row_id": cid,
                "data_type": DATA_TYPE,
                "description": "conversation",
                "prompting_mode": "zero_shot",
                "constraints": json.dumps({"turns": len(talk.messages) // 2}),
                "persona_id": p["persona_id"],
                "source_text_id": p["source_text_id"],
                "prompt": talk.messages[0]["content"],
                "output": talk.transcript(),
                "model": model,
                "prompt_hash": user_template.template_hash,
                "request_hash": talk.hashes[-1],
            }
        )
        turn_rows += [
            {
                "turn_id": content_id("turn", cid, i),
                "conversation_id": cid,
                "turn": i,
                "role": m["role"],
                "content": m["content"],
                "persona_id": p["persona_id"],
                "source_text_id": p["source_text_id"],
                "model": model,
                "request_hash": talk.hashes[i],
            }
            for i, m in enumerate(talk.messages)
        ]
    common = {"created_at": now_utc(), "partition": partition}
    rejects = reject_rows(answers.rejects + dropped, stage, partition)
    return ConversationOutput(
        rows_frame("generations", [{**r, **common} for r in rows]),
        rows_frame("conversation_turns", [{**t, **common} for t in turn_rows]),
        rejects,
        answers.stats,
    )
