"""Validators for synthesized data: raw LLM answer → clean output, or a reason it was rejected.

A data type picks one validator *kind* and configures it in ``data_types.yaml`` — so a new data type
needs no Python. Two kinds cover the paper's six types:

* ``text`` — free text (math and reasoning problems, instructions, knowledge articles): an optional
  label such as ``Math problem:`` that the output starts with (a chatty preamble before it is dropped),
  word limits, required digits or question, and a repetition check (small models loop).
* ``json`` — a JSON object (tools, game NPCs): required keys and their JSON types, minimum words for
  chosen fields, fields that must differ from each other; the output is the canonical JSON, or text
  rendered from it with a Jinja ``format`` (the released NPC data is text).

Every reason is a short stable code (``too_short``, ``invalid_json``, ``missing_keys`` …) so the
``rejects`` table can be grouped by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jinja2

from personahub_dagster.core.stages.parsing import REFUSAL, words

Validated = tuple[str | None, str | None]  # (output, None) or (None, reason)
Validator = Callable[[str | None], Validated]

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "array": list,
    "object": dict,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
}
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def repetitive(text: str, min_distinct: float = 0.5) -> bool:
    """True when fewer than ``min_distinct`` of the text's word 3-grams are distinct — the signature of
    a model stuck in a loop ("the island, the island, …"). Short texts pass."""
    w = words(text)
    grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
    return len(grams) >= 12 and len(set(grams)) / len(grams) < min_distinct


def text_validator(
    label: str | None = None,
    min_words: int = 8,
    max_words: int = 1500,
    require_digits: bool = False,
    require_question: bool = False,
    min_distinct: float = 0.5,
) -> Validator:
    """Free text. With a ``label`` the output always starts with it: text before the label's first
    occurrence (a preamble) is dropped, and a missing label is added."""
    pattern = re.compile(re.escape(label.rstrip(": ")) + r"\s*:", re.IGNORECASE) if label else None

    def validate(raw: str | None) -> Validated:
        if raw is None or not raw.strip():
            return None, "empty"
        if REFUSAL.search(raw):
            return None, "refusal"
        text = raw.replace("**", "").strip()
        if pattern is not None:
            m = pattern.search(text)
            body = text[m.end() :] if m else text
            text = f"{label.rstrip()} {body.strip()}"
        n = len(words(text)) - (len(words(label)) if label else 0)
        if n < min_words:
            return None, "too_short"
        if n > max_words:
            return None, "too_long"
        if require_digits and not re.search(r"\d", text):
            return None, "no_numbers"
        if require_question and "?" not in text:
            return None, "no_question"
        if repetitive(text, min_distinct):
            return None, "repetitive"
        return text, None

    return validate


def _json_object(raw: str) -> dict | None:
    """The first JSON object in ``raw`` (models wrap JSON in prose or code fences)."""
    start = raw.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(raw[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def json_validator(
    required: dict[str, str] | None = None,
    min_words: dict[str, int] | None = None,
    distinct: list[str] | None = None,
    format: str | None = None,  # the config key users write (shadows the builtin here only)
    min_distinct: float = 0.5,
) -> Validator:
    """A JSON object with ``required`` keys of the given JSON types (``string``, ``array``, …)."""
    required = required or {}
    min_words = min_words or {}
    render = _ENV.from_string(format) if format else None

    def validate(raw: str | None) -> Validated:
        if raw is None or not raw.strip():
            return None, "empty"
        obj = _json_object(raw)
        if obj is None:
            return None, "refusal" if REFUSAL.search(raw) else "invalid_json"
        if missing := [k for k in required if k not in obj]:
            return None, f"missing_keys: {', '.join(missing)}"
        for key, kind in required.items():
            if not isinstance(obj[key], _JSON_TYPES[kind]) or (kind != "boolean" and obj[key] is True):
                return None, f"wrong_type: {key} should be {kind}"
        for key, n in min_words.items():
            if len(words(str(obj.get(key, "")))) < n:
                return None, f"too_short: {key}"
        values = [" ".join(words(str(obj.get(k, "")))) for k in distinct or []]
        if len(set(values)) < len(values):
            return None, "repetitive"
        if any(repetitive(str(v), min_distinct) for v in obj.values() if isinstance(v, str)):
            return None, "repetitive"
        if render is not None:
            return render.render(**obj).strip(), None
        return json.dumps(obj, ensure_ascii=False), None

    return validate


KINDS: dict[str, Callable[..., Validator]] = {"text": text_validator, "json": json_validator}


def build_validator(spec: dict[str, Any]) -> Validator:
    """``{kind: text, label: "Math problem:", …}`` → a validator; unknown kinds or options fail loudly."""
    spec = dict(spec)
    kind = spec.pop("kind", "text")
    if kind not in KINDS:
        raise ValueError(f"unknown validator kind {kind!r}; choose one of {sorted(KINDS)}")
    try:
        return KINDS[kind](**spec)
    except TypeError as exc:
        raise ValueError(f"bad options for validator kind {kind!r}: {exc}") from exc
