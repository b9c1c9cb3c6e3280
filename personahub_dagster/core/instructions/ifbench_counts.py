"""IFBench's counting constraints: word ranges, unique words, numbers, keywords counted exactly, repeats
capped, a keyword in the n-th sentence or at fixed word positions, palindromes, title case — each checked as
IFBench's own checker checks it."""

from __future__ import annotations

import re
import string
from collections import Counter

import personahub_dagster.core.instructions.text as text
from personahub_dagster.core.instructions.draft import Draft
from personahub_dagster.core.instructions.kind import Args, Kind, Pick, one_of

KEYWORDS = (
    "budget", "schedule", "safety", "history", "community", "quality", "training", "weather", "harvest",
    "museum",
)  # fmt: skip
NUMBERS = ("12", "7", "30", "4", "25", "9")
TIMES = (1, 2, 3, 5, 7)
_EDGE = string.punctuation + " "


def _unique_words(value: str) -> int:
    return len({w.strip(_EDGE) for w in value.lower().split()})


def _repeats_ok(value: str, a: Args) -> bool:
    counts = Counter(text.strip_punctuation(value.lower()).split())
    return all(n <= a["small_n"] for n in counts.values())


def _keyword_in_sentence(value: str, a: Args) -> bool:
    found = text.split_sentences(value)
    return len(found) >= a["N"] and a["word"].lower() in found[a["N"] - 1].lower()


def _words_position(value: str, a: Args) -> bool:
    words = text.tokens(value)
    return len(words) >= 2 and words[1] == words[-2] == a["keyword"]


def _palindromes(value: str) -> bool:
    words = text.strip_punctuation(value).lower().split()
    return len([w for w in words if w == w[::-1] and len(w) >= 5]) >= 10


def _title_case(value: str) -> bool:
    for word in text.tokens(value):
        if word[0].isupper() and word[1:].islower():
            continue
        if word[0].islower() and (word[1:].isupper() or word[1:].islower()):
            return False
    return True


def _keywords_args(pick: Pick) -> Args:
    pool = list(KEYWORDS)
    chosen = [pool.pop(pick(len(pool))) for _ in TIMES]
    return {f"keyword{i}": k for i, k in enumerate(chosen, start=1)}


def _shape_keywords(d: Draft, a: Args) -> None:
    for i, times in enumerate(TIMES, start=1):
        d.extra.append(" ".join([a[f"keyword{i}"]] * times).capitalize() + ".")


def _word_range_args(pick: Pick) -> Args:
    low = 50 + 10 * pick(16)
    return {"min_words": low, "max_words": low + max(8, low // 10)}


def _grow_sentences(d: Draft, a: Args, value: str) -> bool:
    return len(text.split_sentences(value)) < a["N"] and d.grow()


def _shape_sentence_keyword(d: Draft, a: Args) -> None:
    d.marks[a["N"]] = a["word"]


def _shape_position(d: Draft, a: Args) -> None:
    d.opening = f"Here {a['keyword']} matters."
    d.last = f"Remember {a['keyword']}."


KINDS: list[Kind] = [
    Kind(
        "count:word_count_range",
        "ifbench",
        lambda pick, req: _word_range_args(pick),
        lambda a: f"The response must contain between {a['min_words']} and {a['max_words']} words.",
        lambda v, a: a["min_words"] <= text.count_words(v) <= a["max_words"],
        grow=lambda d, a, v: text.count_words(v) < a["min_words"] and d.grow(),
    ),
    Kind(
        "count:unique_word_count",
        "ifbench",
        lambda pick, req: {"N": 20 + 10 * pick(9)},
        lambda a: f"Use at least {a['N']} unique words in the response.",
        lambda v, a: _unique_words(v) >= a["N"],
        grow=lambda d, a, v: d.grow(),
    ),
    Kind(
        "count:numbers",
        "ifbench",
        lambda pick, req: {"N": 1 + pick(len(NUMBERS))},
        lambda a: f"Include exactly {a['N']} numbers in the response.",
        lambda v, a: len(re.findall(r"\d+", text.strip_punctuation(v))) == a["N"],
        lambda d, a: d.extra.append("The counts are " + " ".join(NUMBERS[: a["N"]]) + "."),
    ),
    Kind(
        "count:keywords_multiple",
        "ifbench",
        lambda pick, req: _keywords_args(pick),
        lambda a: (
            f"Include keyword {a['keyword1']} once in your response, keyword {a['keyword2']} twice in your "
            f"response, keyword {a['keyword3']} three times in your response, keyword {a['keyword4']} five "
            f"times "
            f"in your response, and keyword {a['keyword5']} seven times in your response."
        ),
        lambda v, a: all(
            v.lower().count(a[f"keyword{i}"].lower()) == t for i, t in enumerate(TIMES, start=1)
        ),
        _shape_keywords,
    ),
    Kind(
        "words:repeats",
        "ifbench",
        lambda pick, req: {"small_n": 2 + pick(4)},
        lambda a: f"The response should not repeat any word more than {a['small_n']} times.",
        _repeats_ok,
    ),
    Kind(
        "sentence:keyword",
        "ifbench",
        lambda pick, req: {"word": one_of(pick, KEYWORDS), "N": 1 + pick(6)},
        lambda a: f'The response must include keyword "{a["word"]}" in the {a["N"]}-th sentence.',
        _keyword_in_sentence,
        _shape_sentence_keyword,
        grow=_grow_sentences,
        why="sentences as IFBench's regular-expression splitter finds them",
    ),
    Kind(
        "words:words_position",
        "ifbench",
        lambda pick, req: {"keyword": one_of(pick, KEYWORDS)},
        lambda a: (
            f"The second word in your response and the second to last word in your response should be "
            f"the word {a['keyword']}."
        ),
        _words_position,
        _shape_position,
        why="words as nltk.word_tokenize finds them (a final full stop is a word)",
    ),
    Kind(
        "words:palindrome",
        "ifbench",
        lambda pick, req: {},
        lambda a: "Include at least 10 single-word palindromes, each at least 5 characters long.",
        lambda v, a: _palindromes(v),
        lambda d, a: d.extra.append("Level radar civic kayak refer rotor madam stats tenet racecar."),
    ),
    Kind(
        "format:title_case",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Write the entire response in title case (capitalize the first letter of every major word)."
        ),
        lambda v, a: _title_case(v),
        lambda d, a: setattr(d, "case", "title"),
    ),
]
