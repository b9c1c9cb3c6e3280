"""IFEval's instructions about words, sentences, paragraphs, languages and content: keywords (present,
counted, forbidden, a letter's count), the response's language, counts of sentences, words and paragraphs,
placeholders and postscripts — each checked exactly as IFEval's own checker checks it."""

from __future__ import annotations

import collections
import re

import personahub_dagster.core.instructions.text as text
from personahub_dagster.core.instructions.draft import Draft
from personahub_dagster.core.instructions.kind import Args, Kind, Pick, compare, grow_if, one_of, set_fields

KEYWORDS = ("budget", "schedule", "safety", "history", "community", "progress", "training", "weather")
FORBIDDEN = ("very", "really", "just", "basically", "actually", "literally")
LANGUAGES = {"fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese"}
PLACEHOLDERS = ("name", "address", "date", "time")
COMMON_LETTERS = "aeinorst"
RARE_LETTERS = "jqxz"
FIRST_WORDS = ("however", "first", "finally", "today", "moreover", "still")
RELATIONS = ("less than", "at least")


def _paragraphs(value: str, a: Args) -> bool:
    parts = re.split(r"\s?\*\*\*\s?", value)
    n = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                n -= 1
            else:
                return False  # an empty paragraph between two dividers
    return n == a["num_paragraphs"]


def _nth_first_word(value: str, a: Args) -> bool:
    parts = re.split(r"\n\n", value)
    n = len([p for p in parts if p.strip()])
    if a["nth_paragraph"] > n:
        return False
    paragraph = parts[a["nth_paragraph"] - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first += letter.lower()
    return n == a["num_paragraphs"] and first == a["first_word"]


def _postscript(value: str, marker: str) -> bool:
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(re.findall(pattern, value.lower(), flags=re.MULTILINE))


def _sentence_with(words: list[str]) -> str:
    return " ".join(words).capitalize() + " matter here."


def _frequency_args(pick: Pick) -> Args:
    relation = one_of(pick, RELATIONS)
    return {
        "keyword": one_of(pick, KEYWORDS),
        "frequency": (2 + pick(3)) if relation == "less than" else (1 + pick(4)),
        "relation": relation,
    }


def _letter_args(pick: Pick) -> Args:
    relation = one_of(pick, RELATIONS)
    if relation == "less than":  # a rare letter: a count below a few is something an answer can keep
        return {"letter": one_of(pick, RARE_LETTERS), "let_frequency": 2 + pick(5), "let_relation": relation}
    return {"letter": one_of(pick, COMMON_LETTERS), "let_frequency": 5 + pick(11), "let_relation": relation}


def _shape_frequency(d: Draft, a: Args) -> None:
    if a["relation"] == "at least":
        d.extra += [f"The {a['keyword']} matters." for _ in range(a["frequency"])]


def _shape_nth(d: Draft, a: Args) -> None:
    d.paragraphs, d.separator = a["num_paragraphs"], "\n\n"
    d.first_words[a["nth_paragraph"]] = a["first_word"]


def _shape_paragraphs(d: Draft, a: Args) -> None:
    d.paragraphs, d.separator = a["num_paragraphs"], "\n***\n"


def _nth_args(pick: Pick) -> Args:
    n = 2 + pick(4)
    return {"num_paragraphs": n, "nth_paragraph": 2 + pick(n - 1), "first_word": one_of(pick, FIRST_WORDS)}


KINDS: list[Kind] = [
    Kind(
        "keywords:existence",
        "ifeval",
        lambda pick, req: {"keywords": sorted({one_of(pick, KEYWORDS), one_of(pick, KEYWORDS)})},
        lambda a: f"Include keywords {', '.join(a['keywords'])} in the response.",
        lambda v, a: all(re.search(k, v, flags=re.IGNORECASE) for k in a["keywords"]),
        lambda d, a: d.extra.append(_sentence_with([" and ".join(a["keywords"])])),
    ),
    Kind(
        "keywords:frequency",
        "ifeval",
        lambda pick, req: _frequency_args(pick),
        lambda a: (
            f"In your response, the word {a['keyword']} should appear {a['relation']} {a['frequency']} times."
        ),
        lambda v, a: compare(
            len(re.findall(a["keyword"], v, flags=re.IGNORECASE)), a["relation"], a["frequency"]
        ),
        _shape_frequency,
    ),
    Kind(
        "keywords:forbidden_words",
        "ifeval",
        lambda pick, req: {"forbidden_words": sorted({one_of(pick, FORBIDDEN), one_of(pick, FORBIDDEN)})},
        lambda a: f"Do not include keywords {', '.join(a['forbidden_words'])} in the response.",
        lambda v, a: (
            not any(re.search(r"\b" + w + r"\b", v, flags=re.IGNORECASE) for w in a["forbidden_words"])
        ),
    ),
    Kind(
        "keywords:letter_frequency",
        "ifeval",
        lambda pick, req: _letter_args(pick),
        lambda a: (
            f"In your response, the letter {a['letter']} should appear {a['let_relation']} "
            f"{a['let_frequency']} times."
        ),
        lambda v, a: compare(
            collections.Counter(v.lower())[a["letter"]], a["let_relation"], a["let_frequency"]
        ),
        grow=lambda d, a, v: grow_if(d, a, "let_relation"),
    ),
    Kind(
        "language:response_language",
        "ifeval",
        lambda pick, req: {"language": one_of(pick, list(LANGUAGES))},
        lambda a: (
            f"Your ENTIRE response should be in {LANGUAGES[a['language']]} language, no other language "
            "is allowed."
        ),
        lambda v, a: text.detect(v) in (None, a["language"]),
        set_fields(language=lambda a: a["language"]),
        grow=lambda d, a, v: d.grow(),  # more of the language outweighs the words other kinds put in
        why="langdetect over all its languages, as IFEval (a text it finds no features in passes)",
    ),
    Kind(
        "length_constraints:number_sentences",
        "ifeval",
        lambda pick, req: (
            {"num_sentences": 4 + pick(9), "relation": "less than"}
            if pick(2)
            else {"num_sentences": 2 + pick(9), "relation": "at least"}
        ),
        lambda a: f"Your response should contain {a['relation']} {a['num_sentences']} sentences.",
        lambda v, a: compare(len(text.sentences(v)), a["relation"], a["num_sentences"]),
        lambda d, a: setattr(d, "long", d.long or a["relation"] == "less than"),
        grow=lambda d, a, v: grow_if(d, a, "relation"),
        why="sentences as NLTK's Punkt splits them with its English model (abbreviations, decimals)",
    ),
    Kind(
        "length_constraints:number_paragraphs",
        "ifeval",
        lambda pick, req: {"num_paragraphs": 2 + pick(4)},
        lambda a: (
            f"There should be {a['num_paragraphs']} paragraphs. Paragraphs are separated with the "
            "markdown divider: ***"
        ),
        _paragraphs,
        _shape_paragraphs,
        why="paragraphs separated by ***, as IFEval asks for them (not by blank lines)",
    ),
    Kind(
        "length_constraints:number_words",
        "ifeval",
        lambda pick, req: (
            {"num_words": 100 + 25 * pick(9), "relation": "less than"}
            if pick(2)
            else {"num_words": 50 + 25 * pick(7), "relation": "at least"}
        ),
        lambda a: f"Answer with {a['relation']} {a['num_words']} words.",
        lambda v, a: compare(text.count_words(v), a["relation"], a["num_words"]),
        grow=lambda d, a, v: grow_if(d, a, "relation"),
    ),
    Kind(
        "length_constraints:nth_paragraph_first_word",
        "ifeval",
        lambda pick, req: _nth_args(pick),
        lambda a: (
            f"There should be {a['num_paragraphs']} paragraphs. Paragraphs and only paragraphs are "
            f"separated with each other by two new lines. Paragraph {a['nth_paragraph']} must start with "
            f"word "
            f"{a['first_word']}."
        ),
        _nth_first_word,
        _shape_nth,
    ),
    Kind(
        "detectable_content:number_placeholders",
        "ifeval",
        lambda pick, req: {"num_placeholders": 1 + pick(4)},
        lambda a: (
            f"The response must contain at least {a['num_placeholders']} placeholders represented by "
            "square brackets, such as [address]."
        ),
        lambda v, a: len(re.findall(r"\[.*?\]", v)) >= a["num_placeholders"],
        lambda d, a: d.extra.append(
            "Send it to " + " and ".join(f"[{p}]" for p in PLACEHOLDERS[: a["num_placeholders"]]) + "."
        ),
    ),
    Kind(
        "detectable_content:postscript",
        "ifeval",
        lambda pick, req: {"postscript_marker": one_of(pick, ("P.S.", "P.P.S"))},
        lambda a: (
            f"At the end of your response, please explicitly add a postscript starting with "
            f"{a['postscript_marker']}"
        ),
        lambda v, a: _postscript(v, a["postscript_marker"]),
        # lowercase after the marker, no full stop: Punkt reads no new sentence in it
        lambda d, a: d.tail.append(f"{a['postscript_marker']} thank you for reading"),
        why="a marker anywhere on a line, in any case (p.s., **P.S.**), as IFEval",
    ),
]
