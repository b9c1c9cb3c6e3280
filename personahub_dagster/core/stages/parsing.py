"""Turning raw LLM text into validated fields, or into a reason for the rejects table.

Small local models and large remote ones fail differently (labels, markdown, quotes, refusals,
run-on text); every rule here is one that a real output broke. A parse either returns a clean value
or a short, stable reason string that can be counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i cannot|i can'?t (help|assist|provide)|as an ai|i'?m unable|"
    r"i am unable|cannot comply|i do not feel comfortable)\b",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*(persona|answer|response|description|output)\s*(?:\*\*)?\s*[:\-]\s*", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# "The person likely to read this text is a food blogger …" → "A food blogger …"
_PREAMBLE = re.compile(
    r"^(?:the |this )?(?:person|persona|individual|reader|author|writer|people)\b[^.:]{0,120}?"
    r"(?:\b(?:is|are|would|might|could)(?:\s+likely)?(?:\s+to)?(?:\s+have)?(?:\s+be(?:en)?)?\s+|:\s*)(?=(?:a|an)\b)",
    re.IGNORECASE,
)
_LABEL_ONLY = re.compile(r"^[\w' -]{1,40}:$")  # "Agencer:" on a line of its own
_HANDLE = re.compile(r"^(?:@\w+\s+)+")  # "@AlecBennett A person …"
_NOT_A_PERSON = re.compile(r"^(this|the) (text|article|passage|post|document)\b", re.IGNORECASE)
# Words of any script: letters and digits (an inner apostrophe kept: "don't", "aujourd'hui"); Chinese
# and Japanese characters count one each, since those scripts put no spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:'[^\W_{_CJK}]+)*")


def clean_line(text: str) -> str:
    """Strip markdown emphasis, list markers, surrounding quotes and leading labels."""
    s = text.strip().replace("**", "")
    s = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", s)
    s = _LABEL.sub("", s)
    return s.strip().strip("\"'“”‘’`").strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize_for_match(text: str) -> str:
    """Lower-cased words joined by single spaces: the form used to spot repeats and echoes."""
    return " ".join(words(text))


def first_sentences(text: str, n: int = 2) -> str:
    return " ".join(_SENTENCE_END.split(text.strip())[:n]).strip()


class PersonaFields(BaseModel):
    """A structured Text-to-Persona answer. Only ``persona`` is required; capable models fill the rest
    when the template asks for JSON, and small models answering in plain sentences leave them empty."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    persona: str = Field(min_length=1)
    occupation: str | None = None
    domain: str | None = None
    expertise_level: str | None = None


@dataclass(frozen=True)
class PersonaFilters:
    """Quality gates every persona passes (the reasons they produce are counted in ``rejects``)."""

    min_words: int = 4
    max_words: int = 80
    max_sentences: int = 2
    language: str | None = "en"  # None accepts any language
    require_person: bool = True


DEFAULT_FILTERS = PersonaFilters()
_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)
# Enough of the commonest English function words that any English sentence of 4+ words has one.
_EN_STOPWORDS = frozenset(
    _WORD.findall(
        "a an the of and or in on at to for with who whose which that is are was by as from their his her "
        "they she he it its has have this these those into about over after be been must can will not but "
        "like more most also such than other all so"
    )
)


def _structured(raw: str) -> tuple[PersonaFields | None, str | None]:
    """JSON answers (bare or fenced): ``(fields, None)``, ``(None, reason)``, or ``(None, None)`` if
    the answer is not JSON at all."""
    stripped = raw.strip().removeprefix("```json").removeprefix("```").strip()
    if not stripped.startswith("{"):
        return None, None
    match = _JSON_BLOCK.search(stripped)
    try:
        data = json.loads(match.group(0) if match else stripped)
    except json.JSONDecodeError:
        return None, "invalid_json"
    try:
        return PersonaFields.model_validate(data), None
    except ValidationError:
        return None, "schema_mismatch"


def is_english(text: str) -> bool:
    tokens = words(text)
    return bool(tokens) and sum(t in _EN_STOPWORDS for t in tokens) / len(tokens) >= 0.06


def parse_persona(
    raw: str | None, source_text: str | None = None, filters: PersonaFilters = DEFAULT_FILTERS
) -> tuple[PersonaFields | None, str | None]:
    """A persona from a model answer (JSON or a plain sentence) → ``(fields, None)`` or ``(None, reason)``."""
    if raw is None or not raw.strip():
        return None, "empty"
    if REFUSAL.search(raw):
        return None, "refusal"
    fields, reason = _structured(raw)
    if reason:
        return None, reason
    if fields is None:
        lines = [
            line for line in (clean_line(x) for x in raw.splitlines()) if line and not _LABEL_ONLY.match(line)
        ]
        if not lines:
            return None, "empty"
        fields = PersonaFields(persona=lines[0])
    persona = first_sentences(clean_line(fields.persona), n=filters.max_sentences)
    persona = _HANDLE.sub("", persona)
    if m := _PREAMBLE.match(persona):
        persona = persona[m.end() :]
    persona = persona[:1].upper() + persona[1:]
    n_words = len(words(persona))
    if n_words < filters.min_words:
        return None, "too_short"
    if n_words > filters.max_words:
        return None, "too_long"
    if filters.require_person and _NOT_A_PERSON.match(persona):
        return None, "not_a_person"
    if source_text and is_echo(persona, source_text):
        return None, "echo_of_input"
    if filters.language == "en" and not is_english(persona):
        return None, "wrong_language"
    return fields.model_copy(update={"persona": persona}), None


def is_echo(candidate: str, source: str, threshold: float = 0.8) -> bool:
    """True when most of the candidate's word 3-grams appear verbatim in the source."""
    cw = words(candidate)
    src = _spaced_words(source)
    if len(cw) < 3:
        return f" {' '.join(cw)} " in src
    grams = {" ".join(cw[i : i + 3]) for i in range(len(cw) - 2)}
    return sum(f" {g} " in src for g in grams) / len(grams) >= threshold


@lru_cache(maxsize=256)
def _spaced_words(source: str) -> str:
    """The source's words, space-separated and space-padded, once per text: a word n-gram occurs in
    the source exactly when `` n-gram `` is a substring of this (a few substring searches per
    answer instead of building the source's n-gram set)."""
    return f" {normalize_for_match(source)} "


_RELATION = re.compile(r"^\s*(?:\*\*)?\s*relation(?:ship)?\s*(?:\*\*)?\s*[:\-]\s*(.+)$", re.IGNORECASE)
_PERSONA = re.compile(r"^\s*(?:\*\*)?\s*persona\s*(?:\*\*)?\s*[:\-]\s*(.+)$", re.IGNORECASE)


def parse_relation(
    raw: str | None, parent: str, filters: PersonaFilters = DEFAULT_FILTERS
) -> tuple[tuple[str, PersonaFields] | None, str | None]:
    """``Relation: …`` / ``Persona: …`` answer → ``((relation, persona), None)`` or ``(None, reason)``."""
    if raw is None or not raw.strip():
        return None, "empty"
    if REFUSAL.search(raw):
        return None, "refusal"
    relation = persona_text = None
    for line in raw.splitlines():
        if relation is None and (m := _RELATION.match(line)):
            relation = clean_line(m.group(1)).rstrip(".")
        elif persona_text is None and (m := _PERSONA.match(line)):
            persona_text = m.group(1)
    if not relation:
        return None, "missing_relation"
    if not persona_text:
        return None, "missing_persona"
    fields, reason = parse_persona(persona_text, filters=filters)
    if fields is None:
        return None, reason
    if normalize_for_match(fields.persona) == normalize_for_match(parent):
        return None, "same_as_parent"
    return (relation[:80], fields), None
