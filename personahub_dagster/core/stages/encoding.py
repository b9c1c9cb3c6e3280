"""Bytes to text. UTF-8 (with or without a byte-order mark) and UTF-16 with its mark are read as they
are; any other encoding — Latin-1 and Windows-1252 pages, Shift-JIS — is detected (charset-normalizer)
and used only when the detector is confident and what it decodes is text. A file no encoding reads
cleanly stays a reported skip: a readable text is never lost, and bytes never become mojibake."""

from __future__ import annotations

import codecs
import unicodedata

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
MAX_CHAOS = 0.1  # charset-normalizer's mess ratio: above it the guess is not trusted
_WHITESPACE_CONTROLS = set("\t\n\r\f\v")
PREFERRED = ("cp1252", "latin_1", "iso8859_15", "cp932", "shift_jis", "euc_jp", "gb18030", "big5", "euc_kr")


def has_utf16_bom(raw: bytes) -> bool:
    return raw[:2] in UTF16_BOMS


def is_utf16_text(head: bytes, whole: bool) -> bool:
    """A UTF-16 byte-order mark followed by text (its NUL bytes are not a sign of binary); ``whole``: the
    head is the whole file, so an odd length is not UTF-16 either."""
    if not has_utf16_bom(head):
        return False
    try:
        text = (head if whole else head[: len(head) // 2 * 2]).decode("utf-16")
    except UnicodeDecodeError:
        return False
    return _is_text(text)


def _is_text(text: str) -> bool:
    return not any(unicodedata.category(c) == "Cc" and c not in _WHITESPACE_CONTROLS for c in text)


def decode(raw: bytes) -> tuple[str, str]:
    """``(text, encoding)``; raises the UTF-8 ``UnicodeDecodeError`` when nothing reads ``raw`` cleanly."""
    if has_utf16_bom(raw):
        return raw.decode("utf-16"), "utf-16"
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        guess = detect(raw)
        if guess is None:
            raise
        return guess


def detect(raw: bytes) -> tuple[str, str] | None:
    """The detector's confident reading of ``raw`` as text, or None."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches or matches[0].chaos > MAX_CHAOS:
        return None
    # Short texts tie: Windows-1250, -1252 and -1257 read "café’s" alike and differ on one letter, and
    # readings that give the same text are merged into one match. Among readings the detector scores the
    # same, the web's default for unlabelled Western text wins.
    top = (matches[0].chaos, matches[0].coherence)
    readings = [enc for m in matches if (m.chaos, m.coherence) == top for enc in m.could_be_from_charset]
    encoding = min(readings, key=lambda e: PREFERRED.index(e) if e in PREFERRED else len(PREFERRED))
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return None
    return (text, encoding) if _is_text(text) else None  # control characters: not text, whatever it says
