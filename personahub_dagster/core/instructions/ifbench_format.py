"""IFBench's constraints of form: a template, a list with another marker, an italic thesis, sub-bullets,
sentences then bullets, quotes explained, every punctuation mark, nested brackets and quotes — each checked
as IFBench's own checker checks it."""

from __future__ import annotations

import re
import string

import personahub_dagster.core.instructions.text as text
from personahub_dagster.core.instructions.kind import Kind, one_of

SEPARATORS = ("...", "SEPARATOR", "!?!?")


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


KINDS: list[Kind] = [
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
]
