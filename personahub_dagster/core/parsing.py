"""Turning raw LLM text into validated fields, or into a reason for the rejects table.

Small local models and large remote ones fail differently (labels, markdown, quotes, refusals,
run-on text); every rule here is one that a real output broke. A parse either returns a clean value
or a short, stable reason string that can be counted.
"""

from __future__ import annotations

import re

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
    r"^(?:the |this )?(?:person|persona|individual|reader|author|writer|people)\b[^.]{0,120}?"
    r"\b(?:is|are|would|might|could)(?:\s+likely)?(?:\s+to)?(?:\s+be)?\s+(?=(?:a|an)\b)",
    re.IGNORECASE,
)
_NOT_A_PERSON = re.compile(r"^(this|the) (text|article|passage|post|document)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")


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


def first_sentences(text: str, n: int = 2, max_chars: int = 400) -> str:
    parts = _SENTENCE_END.split(text.strip())
    out = " ".join(parts[:n]).strip()
    return out[:max_chars].rstrip()


def parse_persona(
    raw: str | None, source_text: str | None = None, min_words: int = 4, max_chars: int = 400
) -> tuple[str | None, str | None]:
    """A persona sentence from a model answer → ``(persona, None)`` or ``(None, reason)``."""
    if raw is None or not raw.strip():
        return None, "empty"
    if REFUSAL.search(raw):
        return None, "refusal"
    lines = [clean_line(line) for line in raw.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return None, "empty"
    persona = first_sentences(lines[0], n=2, max_chars=max_chars)
    if m := _PREAMBLE.match(persona):
        rest = persona[m.end() :]
        persona = rest[:1].upper() + rest[1:]
    if len(words(persona)) < min_words:
        return None, "too_short"
    if _NOT_A_PERSON.match(persona):
        return None, "not_a_person"
    if source_text and is_echo(persona, source_text):
        return None, "echo_of_input"
    return persona, None


def is_echo(candidate: str, source: str, threshold: float = 0.8) -> bool:
    """True when most of the candidate's word 3-grams appear verbatim in the source."""
    cw, sw = words(candidate), words(source)
    if len(cw) < 3:
        return normalize_for_match(candidate) in normalize_for_match(source)
    grams = {tuple(cw[i : i + 3]) for i in range(len(cw) - 2)}
    src = {tuple(sw[i : i + 3]) for i in range(len(sw) - 2)}
    return len(grams & src) / len(grams) >= threshold


_RELATION = re.compile(r"^\s*(?:\*\*)?\s*relation(?:ship)?\s*(?:\*\*)?\s*[:\-]\s*(.+)$", re.IGNORECASE)
_PERSONA = re.compile(r"^\s*(?:\*\*)?\s*persona\s*(?:\*\*)?\s*[:\-]\s*(.+)$", re.IGNORECASE)


def parse_relation(raw: str | None, parent: str) -> tuple[tuple[str, str] | None, str | None]:
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
    relation = relation[:80]
    persona, reason = parse_persona(persona_text)
    if persona is None:
        return None, reason
    if normalize_for_match(persona) == normalize_for_match(parent):
        return None, "same_as_parent"
    return (relation, persona), None


MATH_PREFIX = re.compile(r"math problem\s*:", re.IGNORECASE)


def parse_math_problem(
    raw: str | None, min_words: int = 12, max_chars: int = 3000
) -> tuple[str | None, str | None]:
    """A persona-driven math problem; text before a ``Math problem:`` label is dropped."""
    if raw is None or not raw.strip():
        return None, "empty"
    if REFUSAL.search(raw):
        return None, "refusal"
    text = raw.strip()
    if m := MATH_PREFIX.search(text):
        text = "Math problem:" + text[m.end() :]
    text = text.replace("**", "").strip()
    if len(words(text)) < min_words:
        return None, "too_short"
    if not re.search(r"\d", text):
        return None, "no_numbers"
    return text[:max_chars], None
