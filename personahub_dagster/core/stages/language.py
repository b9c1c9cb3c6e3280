"""The language of a text, detected offline, and the instruction that asks a model to write in it.

Detection is lingua's (``lingua-language-detector``): its 75 language models ship inside the wheel,
so nothing is downloaded at run time, and its n-gram models are built for short texts — personas are
one or two sentences, where fastText's and CLD3's accuracy drops most. The low-accuracy mode (trigrams
only) is the default: ~125 MB resident instead of ~1.2 GB, 20× faster, and as right as the full mode
on web texts of a paragraph or more; ``PERSONAHUB_LANGUAGE_ACCURACY=high`` turns the full mode on.
Codes are ISO 639-1 (``en``, ``fr``…); :data:`UNDETERMINED` (``und``, ISO 639-2's code for it) when
the text has no letters or the detector will not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from personahub_dagster.core.config.settings import settings

UNDETERMINED = "und"
ENGLISH = "en"


@lru_cache(maxsize=2)
def _detector(high_accuracy: bool):
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    return (builder if high_accuracy else builder.with_low_accuracy_mode()).build()


def detect_languages(texts: Sequence[str], max_chars: int = 2000) -> list[str]:
    """One ISO 639-1 code per text (``und`` where undetermined). Only the first ``max_chars`` of each
    text are read: a web page's language is settled long before its end, and the cost stays per text."""
    if not texts:
        return []
    detector = _detector(settings().language_accuracy == "high")
    found = detector.detect_languages_in_parallel_of([t[:max_chars] for t in texts])
    return [lang.iso_code_639_1.name.lower() if lang is not None else UNDETERMINED for lang in found]


def detect_language(text: str) -> str:
    return detect_languages([text])[0]


@lru_cache(maxsize=64)
def _pair_detector(code: str):
    """A full-accuracy detector of two languages, ``code`` and English (None if lingua lacks it)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    try:
        language = Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
    except (AttributeError, ValueError):
        return None, None
    return LanguageDetectorBuilder.from_languages(language, Language.ENGLISH).build(), language


def written_in(text: str, code: str) -> bool:
    """Whether ``text`` is in ``code`` rather than English — the way a model asked for another
    language fails. A persona is a sentence, where the all-language trigram detector is right only
    84% of the time (benchmarks/language_detection.py); asked as a choice of two with lingua's full
    models it is right on every test sentence, for ~15 MB a language. A language lingua does not
    know is not checked (True)."""
    detector, language = _pair_detector(code)
    return detector is None or detector.detect_language_of(text) == language


@lru_cache(maxsize=256)
def language_name(code: str) -> str:
    """``fr`` → ``French``: how a prompt names the language (the code itself if lingua does not know it)."""
    from lingua import IsoCode639_1, Language

    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())).name.title()
    except (AttributeError, ValueError):
        return code


def in_language(messages: list[dict[str, str]], code: str | None) -> list[dict[str, str]]:
    """``messages`` asking for an answer in the language ``code`` — one sentence added to the last
    user turn, so it works with any template (user templates included) and is part of the cache key.
    English and an undetermined language leave the messages as they are."""
    if not code or code in (ENGLISH, UNDETERMINED):
        return messages
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    note = f"\n\nWrite your answer in {language_name(code)}."
    return [{**m, "content": m["content"] + note} if i == last else m for i, m in enumerate(messages)]
