"""Answers of the kinds models write, for differential tests of instruction checkers: case, bullets, JSON
fences, titles, postscript variants, highlights, placeholders, keywords in another case, end phrases, other
languages, sentences without end punctuation, abbreviations, decimals — composed at random (seeded) from
fragments, and transformed as a whole (case, quotes, a chatty first or last line, no punctuation)."""

from __future__ import annotations

import random
import string

REQUEST = "Write a short guide to planning a community garden for your neighbours."

FRAGMENTS = [
    # sentences, abbreviations, decimals, no end punctuation
    "The plan is simple.",
    "Start with the soil, then the seeds.",
    "Dr. Smith says water early, e.g. before nine.",
    "Prices rose 3.5 percent in the U.S. last year.",
    "Mr. Jones moved to St. Louis in Jan. 2020 with Mrs. Jones",
    "It works well enough",
    "Why not try it? You will see!",
    "Wait... really?! Yes; indeed: fine.",
    "The garden grows vegetables and flowers for everyone in the community",
    "NASA and the EU fund I.T. projects; I think so.",
    "a sentence in lowercase without a capital",
    "ALL OF THIS IS SHOUTED IN CAPITALS.",
    "My Answer: yes. My Conclusion: plant. Future Outlook: green.",
    "Is there anything else I can help with?",
    "Any other questions?",
    "Let me know if you have additional questions.",
    "let me know if you have additional questions",
    "My answer is yes.",
    "My answer is maybe.",
    # keywords, forbidden words, substrings, other case
    "The budget and the schedule matter.",
    "BUDGET, Budget, budgetary concerns: safety first.",
    "History of the community shows quality training in any weather.",
    "It is very, really, just basically fine; everything is literally actually done.",
    "Every veryday word differs from very.",
    "The harvest at the museum was a safety lesson.",
    # titles
    "<<A Garden Plan>>",
    "<< >>",
    "<<two\nlines>>",
    "<title>Not a title</title>",
    # postscripts
    "P.S. Water the plants.",
    "p.s. remember the tools",
    "**P.S.** Bring gloves.",
    "P.P.S. One more thing.",
    "P. S. spaced out",
    "PS no dots here",
    "See the P.S. above for details.",
    # bullets and highlights
    "* first point\n* second point\n* third point",
    "- one\n- two",
    "*   spaced bullet\n** not a bullet",
    "• a dot bullet",
    "This is *important* and **urgent** and * * empty.",
    "*** \n",
    "* main\n  - sub one\n* other\n  - sub two",
    # placeholders, sections, json
    "Send it to [name] at [address] on [ ].",
    "SECTION 1\nThe start.\nSECTION 2\nThe middle.",
    "Section 1 first Section 2 second Section 3 third",
    "section 4 in lowercase",
    '{"plan": "garden", "steps": 3}',
    '```json\n{"plan": "garden"}\n```',
    '```JSON\n{"plan": [1, 2]}\n```',
    "```\n[1, 2, 3]\n```",
    "{'plan': 'garden'}",
    # other languages
    "Le jardin communautaire est un lieu de partage pour tout le quartier.",
    "Der Gemeinschaftsgarten gehört allen Nachbarn im Viertel.",
    "El huerto comunitario es un espacio para todos los vecinos.",
    "Il giardino della comunità è aperto a tutti i vicini.",
    "A horta comunitária é um espaço para todos os vizinhos.",
    "Общественный сад открыт для всех соседей.",
    "コミュニティガーデンは近所の人みんなのための場所です。",
    # numbers, palindromes, nested marks, lists
    "We need 12 beds, 1,000 seeds and 7 hoses.",
    "Level radar civic kayak refer rotor madam stats tenet racecar noon.",
    "Nest (alpha [beta {gamma (delta [epsilon])}]) here.",
    'They said "north \'south "east" west\' home" aloud.',
    '"A quoted phrase" explained here.',
    'The end "quoted"',
    "... first item ... second item",
    "SEPARATOR apples SEPARATOR pears",
    "!?!? one !?!? two",
    "<i>Gardens build trust</i> among neighbours.",
    "<em>Thesis</em>",
    "Gardens Grow Slowly But Surely.",
]
SEPARATORS = [" ", "\n", "\n\n", "\n***\n", " *** ", "\n******\n", "\n\n\n"]
OPENERS = ["Sure, here it is:", "**Answer**", "Here is my answer.", REQUEST, REQUEST.upper(), REQUEST.lower()]
CLOSERS = ["Hope this helps!", "***", "P.S. Enjoy.", "Is there anything else I can help with?", '"']


def _title_case(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def answer(rng: random.Random) -> str:
    parts = rng.sample(FRAGMENTS, rng.randint(1, 7))
    text = parts[0]
    for part in parts[1:]:
        text += rng.choice(SEPARATORS) + part
    if rng.random() < 0.25:
        text = rng.choice(OPENERS) + "\n" + text
    if rng.random() < 0.25:
        text = text + "\n" + rng.choice(CLOSERS)
    roll = rng.random()
    if roll < 0.12:
        text = text.lower()
    elif roll < 0.22:
        text = text.upper()
    elif roll < 0.27:
        text = _title_case(text)
    elif roll < 0.32:
        text = text.translate(str.maketrans("", "", string.punctuation))
    if rng.random() < 0.1:
        text = f'"{text}"'
    if rng.random() < 0.05:
        text = "  " + text + "  \n"
    return text


def answers(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [answer(rng) for _ in range(n)]
