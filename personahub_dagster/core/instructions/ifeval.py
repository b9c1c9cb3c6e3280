"""IFEval's 25 verifiable instructions (Zhou et al. 2023, google-research ``instruction_following_eval``),
each checked exactly as IFEval's own checker checks it — the same readers (:mod:`.text`), the same quirks
(a keyword is found case-insensitively anywhere, even inside another word; paragraphs are separated by
``***``; an end phrase is compared without case; English-case instructions also require English).
tests/core/instructions/test_reference.py runs IFEval's code beside these on thousands of answers."""

from __future__ import annotations

import personahub_dagster.core.instructions.ifeval_format as ifeval_format
import personahub_dagster.core.instructions.ifeval_words as ifeval_words
from personahub_dagster.core.instructions.kind import Kind

KINDS: list[Kind] = [*ifeval_words.KINDS, *ifeval_format.KINDS]
LANGUAGE_KINDS = {"language:response_language"}  # shaped first: the filler is in its language

# IFEval's own conflict table (instructions_registry.INSTRUCTION_CONFLICTS): never drawn together
_ALL = {k.id for k in KINDS}
CONFLICTS: dict[str, set[str]] = {
    "language:response_language": {
        "detectable_format:multiple_sections",
        "keywords:existence",
        "keywords:frequency",
        "keywords:forbidden_words",
        "startend:end_checker",
        "change_case:english_capital",
        "change_case:english_lowercase",
    },
    "length_constraints:number_paragraphs": {
        "length_constraints:nth_paragraph_first_word",
        "length_constraints:number_sentences",
    },
    "length_constraints:nth_paragraph_first_word": {"length_constraints:number_paragraphs"},
    "detectable_format:constrained_response": _ALL,
    "detectable_format:multiple_sections": {
        "language:response_language",
        "detectable_format:number_highlighted_sections",
    },
    "detectable_format:json_format": _ALL - {"keywords:forbidden_words", "keywords:existence"},
    "combination:two_responses": _ALL
    - {
        "keywords:forbidden_words",
        "keywords:existence",
        "language:response_language",
        "detectable_format:title",
        "punctuation:no_comma",
    },
    "combination:repeat_prompt": _ALL
    - {"keywords:existence", "detectable_format:title", "punctuation:no_comma"},
    "change_case:capital_word_frequency": {"change_case:english_lowercase", "change_case:english_capital"},
    "change_case:english_lowercase": {"change_case:english_capital"},
    "startend:quotation": {"detectable_format:title"},
}
