"""IFEval's instructions about form: bullets, a constrained answer, highlights, sections, JSON, a title, two
answers, the request repeated, an end phrase, capital words, English in one case, no commas, quotes — each
checked exactly as IFEval's own checker checks it."""

from __future__ import annotations

import json
import re

import personahub_dagster.core.instructions.text as text
from personahub_dagster.core.instructions.draft import FILLER, Draft
from personahub_dagster.core.instructions.kind import Args, Kind, compare, one_of, set_fields

END_PHRASES = (
    "Is there anything else I can help with?",
    "Any other questions?",
    "Let me know if you have additional questions.",
)
RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
CAPITALS = ("NOTE", "KEY", "STEP", "PLAN", "GOAL", "TIP", "RULE", "FACT", "AIM", "TASK")


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


def _shape_capitals(d: Draft, a: Args) -> None:
    if a["capital_relation"] == "at least":
        d.extra.append(" ".join(CAPITALS[: a["capital_frequency"]]) + " come first.")


KINDS: list[Kind] = [
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
        set_fields(fixed=RESPONSES[0]),
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
        set_fields(sections=lambda a: (a["section_spliter"], a["num_sections"])),
    ),
    Kind(
        "detectable_format:json_format",
        "ifeval",
        lambda pick, req: {},
        lambda a: "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
        lambda v, a: _json(v),
        set_fields(as_json=True),
    ),
    Kind(
        "detectable_format:title",
        "ifeval",
        lambda pick, req: {},
        lambda a: (
            "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
        ),
        lambda v, a: _titled(v),
        set_fields(title="A plan for today"),
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
        set_fields(twice=True),
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
        set_fields(end=lambda a: a["end_phrase"]),
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
        lambda v, a: compare(
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
        set_fields(case="upper"),
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
        set_fields(case="lower"),
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
        set_fields(quoted=True),
    ),
]
