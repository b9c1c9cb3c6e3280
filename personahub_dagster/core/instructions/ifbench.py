"""Out-of-domain constraints from IFBench (Pyatkin et al. 2025, allenai/IFBench): kinds a model trained on
IFEval's 25 has not seen, checked as IFBench's own checkers check them. Kept as a family of their own
(``families: [ifeval, ifbench]``) so a team can train on one and evaluate on the other.

Chosen from IFBench's 58 for what fits any persona's request and is checked by code alone: not the fixed
questions (Napoleon's battles, the capitals of Europe), nor the kinds that need NLTK's stop-word list or
part-of-speech tagger (data NLTK downloads)."""

from __future__ import annotations

import re
import string
from collections import Counter

from personahub_dagster.core.instructions import text
from personahub_dagster.core.instructions.draft import Draft
from personahub_dagster.core.instructions.kind import Args, Kind, Pick, one_of

KEYWORDS = (
    "budget", "schedule", "safety", "history", "community", "quality", "training", "weather", "harvest",
    "museum",
)  # fmt: skip
SEPARATORS = ("...", "SEPARATOR", "!?!?")
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


def _thesis(value: str) -> bool:
    index = value.find("<i>")
    if index == -1:
        index = value.find("<em>")
        if index == -1:
            return False
    value = value[index:]
    end = value.find("</i>")
    if end == -1:
        end = value.find("</em>")
        if end == -1:
            return False
    return value[3:end].strip() != "" and value[end + 4 :].strip() != ""


def _no_bullets_then_bullets(value: str) -> bool:
    """IFBench's checker, quirk included: its "still before the bullets" flag is overwritten by each line's
    sentences, so a line with none (a blank line) ends the part before the bullets just as a bullet does."""
    before: object = True
    said = bullets = 0
    for line in value.split("\n"):
        if line.strip().startswith("*"):
            before = False
            if said < 2:
                return False
            bullets += 1
        elif before:
            before = text.split_sentences(line.strip())
            said += len(before)
        else:
            return False
    return bullets >= 2


def _quote_then_explanation(value: str) -> bool:
    value = value.replace("“", '"').replace("”", '"').replace("'\"'", "")
    value = "".join(value.split())
    if '""' in value:
        return False
    rest = value.strip(string.digits + string.punctuation.replace('"', ""))
    return bool(rest) and rest[-1] != '"'  # nothing left: IFBench's checker fails (it raises)


def _punctuation_cover(value: str) -> bool:
    marks = {".", ",", "!", "?", ";", ":"}
    if not ("!?" in value or "?!" in value or "‽" in value):
        return False
    rest = value.replace("?!", "", 1)
    if len(rest) == len(value):
        rest = value.replace("!?", "", 1)
    return not (marks - set(rest))


def _nested_brackets(value: str) -> bool:
    levels: list[str] = []
    depth = 0
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in value:
        if char in "([{":
            levels.append(char)
            depth = max(depth, len(levels))
        elif char in ")]}":
            if levels and levels[-1] == pairs[char]:
                levels.pop()
                if depth >= 5 and len(levels) < depth:
                    return True
            else:
                levels, depth = [], 0
    return False


def _nested_quotes(value: str) -> bool:
    levels: list[str] = []
    reached = current = 0
    for char in value:
        if levels and char == levels[-1]:
            levels.pop()
            current -= 1
            if reached - current >= 3:
                return True
        elif char in "\"'":
            levels.append(char)
            current += 1
            reached = max(reached, current)
    return False


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
        "format:output_template",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Use this exact template for your response: My Answer: [answer] My Conclusion: [conclusion] "
            "Future Outlook: [outlook]"
        ),
        lambda v, a: all(s in v for s in ("My Answer:", "My Conclusion:", "Future Outlook:")),
        lambda d, a: d.lines.extend(
            ["My Answer: Plans help.", "My Conclusion: Start small.", "Future Outlook: Growth follows."]
        ),
    ),
    Kind(
        "format:list",
        "ifbench",
        lambda pick, req: {"sep": one_of(pick, SEPARATORS)},
        lambda a: f"Answer with a list of items, instead of bullet points use {a['sep']}.",
        lambda v, a: len(re.findall(re.escape(a["sep"]), v)) >= 2,
        lambda d, a: d.lines.extend([f"{a['sep']} Clear goals", f"{a['sep']} Steady effort"]),
    ),
    Kind(
        "format:thesis",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Each section must begin with a thesis statement in italics, use HTML to indicate the italics."
        ),
        lambda v, a: _thesis(v),
        lambda d, a: d.lines.append("<i>Good habits compound</i> over many months."),
    ),
    Kind(
        "format:sub-bullets",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Your response must include bullet points denoted by * and at least one sub-bullet point "
            "denoted by - for each bullet point."
        ),
        lambda v, a: all("-" in part for part in v.split("*")[1:]),
        lambda d, a: d.bullets.extend(
            ["* Morning routine", "  - wake early", "* Evening routine", "  - rest well"]
        ),
    ),
    Kind(
        "format:no_bullets_bullets",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Your answer must contain at least two sentences ending in a period followed by at least two "
            "bullet points denoted by *."
        ),
        lambda v, a: _no_bullets_then_bullets(v),
        lambda d, a: d.bullets.extend(["* Plan ahead", "* Review often"]),
        grow=lambda d, a, v: d.grow(),
    ),
    Kind(
        "format:quote_unquote",
        "ifbench",
        lambda pick, req: {},
        lambda a: "Every quoted phrase must be followed by an unquoted explanation.",
        lambda v, a: _quote_then_explanation(v),
    ),
    Kind(
        "count:punctuation",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Use every standard punctuation mark at least once, including semicolons, colons, and the "
            "interrobang (?!)."
        ),
        lambda v, a: _punctuation_cover(v),
        lambda d, a: d.lines.append("Wait, really?! Yes; indeed: fine! Why? Because."),
    ),
    Kind(
        "format:parentheses",
        "ifbench",
        lambda pick, req: {},
        lambda a: "Nest parentheses (and [brackets {and braces}]) at least 5 levels deep.",
        lambda v, a: _nested_brackets(v),
        lambda d, a: d.extra.append("Ideas nest (alpha [beta {gamma (delta [epsilon])}]) deeply."),
    ),
    Kind(
        "format:quotes",
        "ifbench",
        lambda pick, req: {},
        lambda a: (
            "Include quotes within quotes within quotes, at least 3 levels deep, alternating between "
            "double quotes and single quotes."
        ),
        lambda v, a: _nested_quotes(v),
        lambda d, a: d.extra.append('They said "north \'south "east" west\' home" aloud.'),
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

CONFLICTS: dict[str, set[str]] = {}
