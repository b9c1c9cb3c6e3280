"""IFEval's 25 verifiable instructions (Zhou et al. 2023, google-research ``instruction_following_eval``),
each checked exactly as IFEval's own checker checks it — the same readers (:mod:`.text`), the same quirks
(a keyword is found case-insensitively anywhere, even inside another word; paragraphs are separated by
``***``; an end phrase is compared without case; English-case instructions also require English).
tests/core/instructions/test_reference.py runs IFEval's code beside these on thousands of answers."""

from __future__ import annotations

import collections
import json
import re

from personahub_dagster.core.instructions import text
from personahub_dagster.core.instructions.draft import FILLER, Draft
from personahub_dagster.core.instructions.kind import Args, Kind, Pick, one_of

KEYWORDS = ("budget", "schedule", "safety", "history", "community", "quality", "training", "weather")
FORBIDDEN = ("very", "really", "just", "basically", "actually", "literally")
LANGUAGES = {"fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "pt": "Portuguese"}
END_PHRASES = (
    "Is there anything else I can help with?",
    "Any other questions?",
    "Let me know if you have additional questions.",
)
RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
PLACEHOLDERS = ("name", "address", "date", "time")
CAPITALS = ("NOTE", "KEY", "STEP", "PLAN", "GOAL", "TIP", "RULE", "FACT", "AIM", "TASK")
COMMON_LETTERS = "aeinorst"
RARE_LETTERS = "jqxz"
FIRST_WORDS = ("however", "first", "finally", "today", "moreover", "still")
RELATIONS = ("less than", "at least")
LANGUAGE_KINDS = {"language:response_language"}  # shaped first: the filler is in its language


def _compare(found: int, relation: str, n: int) -> bool:
    return found < n if relation == "less than" else found >= n


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


def _highlights(value: str) -> int:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", value) if h.strip("*").strip()]
    double = [
        h for h in re.findall(r"\*\*[^\n\*]*\*\*", value) if h.removeprefix("**").removesuffix("**").strip()
    ]
    return len(single) + len(double)


def _json(value: str) -> bool:
    value = value.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        value = value.removeprefix(prefix)
    try:
        json.loads(value.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def _two_responses(value: str) -> bool:
    parts = value.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def _english_case(value: str, upper: bool) -> bool:
    if not (value.isupper() if upper else value.islower()):
        return False  # IFEval checks the case first and only then asks for the language
    found = text.detect(value)
    return found is None or found == "en"


def _titled(value: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", value))


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


def _grow_if(d: Draft, a: Args, relation_key: str) -> bool:
    """One more sentence for an "at least" count; a "less than" one is never helped by growing."""
    return a[relation_key] == "at least" and d.grow()


def _shape_frequency(d: Draft, a: Args) -> None:
    if a["relation"] == "at least":
        d.extra += [f"The {a['keyword']} matters." for _ in range(a["frequency"])]


def _shape_capitals(d: Draft, a: Args) -> None:
    if a["capital_relation"] == "at least":
        d.extra.append(" ".join(CAPITALS[: a["capital_frequency"]]) + " come first.")


def _shape_nth(d: Draft, a: Args) -> None:
    d.paragraphs, d.separator = a["num_paragraphs"], "\n\n"
    d.first_words[a["nth_paragraph"]] = a["first_word"]


def _shape_paragraphs(d: Draft, a: Args) -> None:
    d.paragraphs, d.separator = a["num_paragraphs"], "\n***\n"


def _nth_args(pick: Pick) -> Args:
    n = 2 + pick(4)
    return {"num_paragraphs": n, "nth_paragraph": 2 + pick(n - 1), "first_word": one_of(pick, FIRST_WORDS)}


def _set(**fields):
    def shape(d: Draft, a: Args) -> None:
        for key, value in fields.items():
            setattr(d, key, value(a) if callable(value) else value)

    return shape


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
        lambda v, a: _compare(
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
        lambda v, a: _compare(
            collections.Counter(v.lower())[a["letter"]], a["let_relation"], a["let_frequency"]
        ),
        grow=lambda d, a, v: _grow_if(d, a, "let_relation"),
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
        _set(language=lambda a: a["language"]),
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
        lambda v, a: _compare(len(text.sentences(v)), a["relation"], a["num_sentences"]),
        lambda d, a: setattr(d, "long", d.long or a["relation"] == "less than"),
        grow=lambda d, a, v: _grow_if(d, a, "relation"),
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
        lambda v, a: _compare(text.count_words(v), a["relation"], a["num_words"]),
        grow=lambda d, a, v: _grow_if(d, a, "relation"),
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
        lambda d, a: d.tail.append(f"{a['postscript_marker']} Thank you for reading."),
        why="a marker anywhere on a line, in any case (p.s., **P.S.**), as IFEval",
    ),
    Kind(
        "detectable_format:number_bullet_lists",
        "ifeval",
        lambda pick, req: {"num_bullets": 2 + pick(4)},
        lambda a: (
            f"Your answer must contain exactly {a['num_bullets']} bullet points. Use the markdown bullet "
            "points such as:\n* This is point 1.\n* This is point 2"
        ),
        lambda v, a: (
            len(re.findall(r"^\s*\*[^\*].*$", v, flags=re.MULTILINE))
            + len(re.findall(r"^\s*-.*$", v, flags=re.MULTILINE))
            == a["num_bullets"]
        ),
        lambda d, a: d.bullets.extend(f"* {FILLER[k][:-1]}" for k in range(a["num_bullets"])),
    ),
    Kind(
        "detectable_format:constrained_response",
        "ifeval",
        lambda pick, req: {},
        lambda a: (
            f'Answer with one of the following options: ("{RESPONSES[0]}", "{RESPONSES[1]}", '
            f'"{RESPONSES[2]}")'
        ),
        lambda v, a: any(r in v.strip() for r in RESPONSES),
        _set(fixed=RESPONSES[0]),
    ),
    Kind(
        "detectable_format:number_highlighted_sections",
        "ifeval",
        lambda pick, req: {"num_highlights": 1 + pick(4)},
        lambda a: (
            f"Highlight at least {a['num_highlights']} sections in your answer with markdown, i.e. "
            "*highlighted section*."
        ),
        lambda v, a: _highlights(v) >= a["num_highlights"],
        lambda d, a: d.extra.append(
            "Note " + " and ".join(f"*{w}*" for w in CAPITALS[: a["num_highlights"]]).lower() + " here."
        ),
    ),
    Kind(
        "detectable_format:multiple_sections",
        "ifeval",
        lambda pick, req: {
            "section_spliter": one_of(pick, ("Section", "SECTION")),
            "num_sections": 2 + pick(4),
        },
        lambda a: (
            f"Your response must have {a['num_sections']} sections. Mark the beginning of each section "
            f"with {a['section_spliter']} X, such as:\n{a['section_spliter']} 1\n[content of section 1]"
        ),
        lambda v, a: len(re.split(r"\s?" + a["section_spliter"] + r"\s?\d+\s?", v)) - 1 >= a["num_sections"],
        _set(sections=lambda a: (a["section_spliter"], a["num_sections"])),
    ),
    Kind(
        "detectable_format:json_format",
        "ifeval",
        lambda pick, req: {},
        lambda a: "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
        lambda v, a: _json(v),
        _set(as_json=True),
    ),
    Kind(
        "detectable_format:title",
        "ifeval",
        lambda pick, req: {},
        lambda a: (
            "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
        ),
        lambda v, a: _titled(v),
        _set(title="A plan for today"),
    ),
    Kind(
        "combination:two_responses",
        "ifeval",
        lambda pick, req: {},
        lambda a: (
            "Give two different responses. Responses and only responses should be separated by 6 asterisk "
            "symbols: ******."
        ),
        lambda v, a: _two_responses(v),
        _set(twice=True),
    ),
    Kind(
        "combination:repeat_prompt",
        "ifeval",
        lambda pick, req: {"prompt_to_repeat": req},
        lambda a: (
            "First repeat the request word for word without change, then give your answer (1. do not say "
            "any words or characters before repeating the request; 2. the request you need to repeat does "
            "not "
            "include this sentence)"
        ),
        lambda v, a: v.strip().lower().startswith(a["prompt_to_repeat"].strip().lower()),
        lambda d, a: d.lead.append(a["prompt_to_repeat"]),
    ),
    Kind(
        "startend:end_checker",
        "ifeval",
        lambda pick, req: {"end_phrase": one_of(pick, END_PHRASES)},
        lambda a: (
            f"Finish your response with this exact phrase {a['end_phrase']} No other words should follow "
            "this phrase."
        ),
        lambda v, a: v.strip().strip('"').lower().endswith(a["end_phrase"].strip().lower()),
        _set(end=lambda a: a["end_phrase"]),
        why="compared without case and past a closing quote, as IFEval",
    ),
    Kind(
        "change_case:capital_word_frequency",
        "ifeval",
        lambda pick, req: (
            {"capital_frequency": 3 + pick(8), "capital_relation": "less than"}
            if pick(2)
            else {"capital_frequency": 2 + pick(7), "capital_relation": "at least"}
        ),
        lambda a: (
            f"In your response, words with all capital letters should appear {a['capital_relation']} "
            f"{a['capital_frequency']} times."
        ),
        lambda v, a: _compare(
            len([w for w in text.tokens(v) if w.isupper()]), a["capital_relation"], a["capital_frequency"]
        ),
        _shape_capitals,
        why="words as nltk.word_tokenize finds them (P.S. is one capital word)",
    ),
    Kind(
        "change_case:english_capital",
        "ifeval",
        lambda pick, req: {},
        lambda a: "Your entire response should be in English, and in all capital letters.",
        lambda v, a: _english_case(v, upper=True),
        _set(case="upper"),
        grow=lambda d, a, v: d.grow(),  # langdetect needs enough English to be sure
    ),
    Kind(
        "change_case:english_lowercase",
        "ifeval",
        lambda pick, req: {},
        lambda a: (
            "Your entire response should be in English, and in all lowercase letters. No capital letters "
            "are allowed."
        ),
        lambda v, a: _english_case(v, upper=False),
        _set(case="lower"),
        grow=lambda d, a, v: d.grow(),  # langdetect needs enough English to be sure
    ),
    Kind(
        "punctuation:no_comma",
        "ifeval",
        lambda pick, req: {},
        lambda a: "In your entire response, refrain from the use of any commas.",
        lambda v, a: "," not in v,
    ),
    Kind(
        "startend:quotation",
        "ifeval",
        lambda pick, req: {},
        lambda a: "Wrap your entire response with double quotation marks.",
        lambda v, a: len(v.strip()) > 1 and v.strip()[0] == '"' and v.strip()[-1] == '"',
        _set(quoted=True),
    ),
]

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
