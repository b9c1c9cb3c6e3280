"""Personal-data scrubbing before text leaves the machine.

Web text carries e-mail addresses, phone numbers, card numbers and street addresses of real people;
sending them to a remote provider is a data transfer the user may not be allowed to make, and a
persona copied from them would carry them into the hub. :func:`scrub` replaces each finding with a
typed placeholder (``[EMAIL]``, ``[PHONE]`` …) so that the text still reads naturally to the model.

Why this set and not presidio: presidio's name finder needs a spaCy model, and the only spaCy models
installable from the package registry here are unofficial re-uploads; a pipeline that runs offline
cannot fetch the official ones. So: phone numbers by Google's libphonenumber (``phonenumbers``: real
numbering plans, not digit patterns — a year range or an ISBN is not a phone), card numbers by
pattern *and* the Luhn checksum, e-mails, US SSNs, IBANs and street addresses by pattern, and names
only where the text marks them (an honorific, "my name is", a sign-off). Recall and precision per
kind on a labelled set are in ``docs/reliability.md`` (``benchmarks/pii_scrub.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

KINDS = ("EMAIL", "PHONE", "CARD", "SSN", "IBAN", "ADDRESS", "NAME")
PII_VERSION = "1"  # part of the LLM cache key of scrubbed requests: bump when what is found changes

# Where a phone number could be: a run of 7+ digits with the usual separators. libphonenumber's matcher
# is exact but slow on long texts, so it only reads these spans (scrubbing a 2,000-character web text
# went from 2.6 ms to well under a millisecond).
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d(?:\s*(?:x|ext\.?|extension)\s*\d{1,5})?")
_DIGIT_RUN = re.compile(r"\d[\d\s().+-]{5,}\d")  # 7+ digits and separators: phones, cards, SSNs
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
    r"Parkway|Pkwy|Square|Sq|Highway|Hwy|Circle|Cir)"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,6}}\s+(?:[A-Z][a-z]+\.?\s+){{1,4}}{_STREET}\b\.?"
    r"(?:,?\s*(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)*(?:,\s*[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?)?"
)
_NAME_WORD = r"(?:[A-Z]'[A-Z][a-z]+|[A-Z][a-z]+(?:-[A-Z][a-z]+)?)"
_FULL_NAME = rf"{_NAME_WORD}(?:\s+[A-Z]\.)?(?:\s+{_NAME_WORD})?"
_NAME = re.compile(
    rf"(?:\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?\s+)({_FULL_NAME})"
    rf"|(?:\b[Mm]y name is\s+)({_FULL_NAME})"
    rf"|(?:\b(?:Regards|Sincerely|Thanks|Cheers|Best),?\s*\n\s*)({_FULL_NAME})"
)


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str, region: str = "US") -> list[Finding]:
    """Every finding, non-overlapping (the longer one wins), in text order."""
    # Cheap gates first (a web text usually has no '@' and no long digit runs): the full patterns run
    # only where they can match, which keeps scrubbing under ~0.1 ms for a typical 2 kB request.
    found: list[Finding] = []
    if "@" in text:
        found += [Finding("EMAIL", m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]
    if _DIGIT_RUN.search(text):
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and _luhn(digits):
                found.append(Finding("CARD", m.start(), m.end(), m.group()))
        found += [Finding("SSN", m.start(), m.end(), m.group()) for m in _SSN.finditer(text)]
        for c in _PHONE_CANDIDATE.finditer(text):
            for m in phonenumbers.PhoneNumberMatcher(c.group(), region, leniency=phonenumbers.Leniency.VALID):
                found.append(Finding("PHONE", c.start() + m.start, c.start() + m.end, m.raw_string))
    found += [Finding("IBAN", m.start(), m.end(), m.group()) for m in _IBAN.finditer(text)]
    found += [Finding("ADDRESS", m.start(), m.end(), m.group()) for m in _ADDRESS.finditer(text)]
    for m in _NAME.finditer(text):
        g = next(i for i in (1, 2, 3) if m.group(i))
        found.append(Finding("NAME", m.start(g), m.end(g), m.group(g)))
    # Longest first, then drop anything overlapping an accepted finding (a card is not also a phone).
    kept: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def scrub(text: str, region: str = "US") -> str:
    """``text`` with each finding replaced by ``[KIND]``."""
    out, pos = [], 0
    for f in find_pii(text, region):
        out += [text[pos : f.start], f"[{f.kind}]"]
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def scrub_messages(messages: list[dict[str, str]], region: str = "US") -> list[dict[str, str]]:
    """Chat messages with the user turns scrubbed (system prompts are ours, not the web's)."""
    return [{**m, "content": scrub(m["content"], region)} if m.get("role") == "user" else m for m in messages]


def evaluate(items: list[tuple[str, list[tuple[str, str]]]], region: str = "US") -> dict[str, dict[str, int]]:
    """Per-kind true positives, misses and false alarms on labelled ``(text, [(kind, value)])`` items.

    A labelled value counts as found when a finding of its kind covers it; a finding is a false alarm
    when it overlaps no labelled value of its kind."""
    tally = {k: {"tp": 0, "fn": 0, "fp": 0} for k in KINDS}
    for text, labels in items:
        spans = []
        for kind, value in labels:
            start = text.index(value)
            spans.append((kind, start, start + len(value)))
        findings = find_pii(text, region)
        for kind, s, e in spans:
            hit = any(f.kind == kind and f.start <= s and f.end >= e for f in findings)
            tally[kind]["tp" if hit else "fn"] += 1
        for f in findings:
            if not any(k == f.kind and f.start < e and f.end > s for k, s, e in spans):
                tally[f.kind]["fp"] += 1
    return tally
