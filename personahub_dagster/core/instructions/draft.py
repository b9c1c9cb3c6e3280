"""Witnesses: for a set of constraints, one answer that meets every one of them.

A set of constraints that no answer can meet is worse than useless for training: every answer to it is a
reject, or a "chosen" answer that failed. A witness proves a set satisfiable. It is built from a
:class:`Draft` — the parts an answer is made of (a lead, a title, sentences, bullets, sections, a postscript,
an end phrase, a case, quotes) — that each kind shapes, rendered to text, and grown (more sentences, more
keywords) while an "at least" kind still fails. The registry's conflict table excludes exactly the sets for
which this finds no witness (tests/core/instructions/test_witness.py draws them by the ten thousand).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Filler never meets or breaks a constraint by accident: no digits, commas, capitals past the first letter,
# keywords, or the rare letters j, q, x, z. Plain English by default (langdetect must read it as English,
# in capitals too); sentences of four words never used twice where a kind counts repeats or unique words.
NATURAL = [
    "The garden behind the house is full of roses in the summer.",
    "We walk to the market every morning to buy fresh bread.",
    "My brother likes to read old books about the sea.",
    "The children are playing in the park near the river.",
    "She has worked at the library for more than twenty years.",
    "The train to the city leaves early in the morning.",
    "Our neighbors often invite us for dinner on the weekend.",
    "The teacher asked the students to write a short story.",
    "There is a small cafe at the corner of the street.",
    "He wants to learn how to play the piano this year.",
    "The air was warm and the sky was clear all day.",
    "They painted the kitchen a bright shade of yellow.",
    "We should leave now if we want to catch the bus.",
    "The old bridge over the river was built long ago.",
    "Her favorite season is autumn when the leaves turn red.",
    "The shop is open every day until late in the evening.",
    "You can find the tools in the shed behind the garage.",
    "The dog waited by the door for the children to come home.",
    "This recipe needs two cups of flour and some butter.",
    "The meeting will start after everyone has arrived.",
]
_VOCABULARY = """
gardens welcome curious travelers rivers follow ancient paths bright lanterns guide evening walkers
patient teachers answer simple problems small boats cross calm harbors old maps show hidden valleys
warm bread fills morning kitchens tall towers overlook busy markets gentle rain cools dusty fields
careful builders measure every beam fresh ideas spark lively debates loyal friends share honest
stories green forests shelter shy birds wide roads connect distant towns steady hands repair broken
clocks silver streams traverse rocky hills kind neighbors offer helpful advice long letters carry
tender news brave sailors chart unknown seas humble farmers plant spring seeds clear windows reveal
sunny afternoons skilled painters blend vivid colors thick blankets comfort tired children sharp
pencils draw elegant lines noisy trains leave crowded stations silent libraries hold rare volumes
golden meadows stretch beyond sight open doors invite eager visitors cold winds shake bare branches
round tables gather hungry families thoughtful readers savor slow evenings deep wells supply clean
water proud athletes train before dawn soft music warms empty halls dark clouds promise heavy storms
strong bridges span mighty canyons tiny acorns become great trees wise elders recall former times
polished stones line garden borders diligent bees visit purple flowers faithful dogs greet returning
owners young artists paint coastal scenes
"""
_WORDS = _VOCABULARY.split()
FILLER = [" ".join(_WORDS[i : i + 4]).capitalize() + "." for i in range(0, len(_WORDS) - len(_WORDS) % 4, 4)]
# Filler in the languages a response-language constraint asks for: langdetect reads each as its language;
# no word in capitals (Portuguese "O", Italian "I" would count as capital words).
FOREIGN = {
    "fr": [
        "Le petit village se trouve au bord de la mer.",
        "Les enfants aiment beaucoup le grand parc de la ville.",
        "Nous allons visiter le marché demain matin.",
        "Cette maison ancienne appartient à ma famille.",
        "Le soleil brille sur les toits de la ville.",
        "Elle prépare un bon repas pour ses amis.",
    ],
    "de": [
        "Das kleine Dorf liegt direkt am Meer.",
        "Die Kinder spielen gerne im großen Garten.",
        "Wir besuchen morgen früh den alten Markt.",
        "Dieses Haus gehört seit vielen Wochen meiner Familie.",
        "Die Sonne scheint hell auf die Dächer der Stadt.",
        "Sie kocht heute ein gutes Essen für ihre Freunde.",
    ],
    "es": [
        "El pueblo está cerca del mar.",
        "Los niños siempre están en el patio grande.",
        "Mañana vamos a visitar el mercado antiguo.",
        "Esta casa pertenece a mi familia desde hace años.",
        "El sol brilla sobre los techos de la ciudad.",
        "Ella prepara una comida para sus amigos.",
    ],
    "it": [
        "Il piccolo paese si trova vicino al mare.",
        "Tutti i bambini giocano sempre nel parco grande.",
        "Domani andiamo a visitare il mercato antico.",
        "Una casa vecchia appartiene alla mia famiglia da molti anni.",
        "Il sole splende sui tetti della città.",
        "Lei prepara una buona cena per gli amici.",
    ],
    "pt": [
        "Esta aldeia fica perto do mar.",
        "As crianças brincam sempre na praça grande.",
        "Amanhã vamos visitar o mercado antigo.",
        "Esta casa pertence à minha família há muitos anos.",
        "Todo dia o sol brilha sobre os telhados da cidade.",
        "Ela prepara um bom almoço para os seus amigos.",
    ],
}


def _one_sentence(said: list[str]) -> str:
    """Sentences joined into one ("A. B." → "A and b."), for an answer asked to have few of them."""
    if len(said) < 2 or any("\n" in s for s in said):
        return " ".join(said)
    parts = [said[0][:-1]] + [(s if s[1:2].isupper() else s[0].lower() + s[1:])[:-1] for s in said[1:]]
    return " and ".join(parts) + said[-1][-1]


@dataclass
class Draft:
    """The parts of an answer; :meth:`render` puts them together in the one order every kind expects."""

    lead: list[str] = field(default_factory=list)  # first, verbatim (a repeated request)
    title: str | None = None
    sentences: list[str] = field(default_factory=list)  # the body, spread over paragraphs
    extra: list[str] = field(default_factory=list)  # sentences a kind needs said (keywords, marks)
    lines: list[str] = field(default_factory=list)  # lines after the body (templates, lists)
    bullets: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # postscripts
    end: str | None = None  # the end phrase, last
    opening: str | None = None  # the first sentence
    last: str | None = None  # the last sentence (before postscripts and the end phrase)
    marks: dict[int, str] = field(default_factory=dict)  # sentence number → a word it must contain
    paragraphs: int = 1
    separator: str = "\n\n"
    first_words: dict[int, str] = field(default_factory=dict)  # paragraph number → its first word
    sections: tuple[str, int] | None = None
    case: str | None = None  # lower, upper, title
    quoted: bool = False
    as_json: bool = False
    twice: bool = False
    language: str | None = None
    fixed: str | None = None  # the whole answer, as given (a constrained response)
    unique: bool = False  # filler that never repeats a word
    long: bool = False  # grow sentences, not their number
    grown: int = 0

    def _pool(self) -> list[str]:
        return FOREIGN[self.language] if self.language else FILLER if self.unique else NATURAL

    def filler(self, k: int) -> str:
        pool = self._pool()
        return pool[k % len(pool)]

    def grow(self) -> bool:
        """One more filler sentence; False when the filler has run out (or, repeating, grew too long)."""
        if self.grown >= (len(FILLER) if self.unique else 200):
            return False
        more = self.filler(self.grown)
        if self.long and self.sentences:  # fewer sentences asked: the words go into the last one
            last = self.sentences[-1]
            self.sentences[-1] = f"{last[:-1]} and {more[0].lower()}{more[1:]}"
        else:
            self.sentences.append(more)
        self.grown += 1
        return True

    def _body(self, variant: int = 0) -> str:
        said = [*([self.opening] if self.opening else []), *self.extra, *self.sentences] or [self.filler(0)]
        if variant:
            said = [*said, self.filler(len(said) + 7)]
        for k, word in self.marks.items():
            while len(said) < k:
                said.append(self.filler(len(said) + 23))
            said[k - 1] = f"{said[k - 1][:-1]} {word}{said[k - 1][-1]}"
        n = max(self.paragraphs, len(self.first_words) and max(self.first_words), 1)
        while len(said) < max(n, self.sections[1] if self.sections else 0):
            said.append(self.filler(len(said) + 11))
        if self.sections:  # a marker before each of the first sentences: sections need not be paragraphs
            spliter, count = self.sections
            said = [f"{spliter} {k + 1}\n{s}" if k < count else s for k, s in enumerate(said)]
        per = -(-len(said) // n)
        blocks = [said[i * per : (i + 1) * per] for i in range(n)]
        for k in range(n):  # the last blocks can come out empty when sentences divide unevenly
            if not blocks[k]:
                blocks[k] = [self.filler(40 + k)]
        paragraphs = []
        for k, block in enumerate(blocks, start=1):
            if k in self.first_words:  # an all-capitals word stays one
                head = block[0] if block[0][1:2].isupper() else block[0][0].lower() + block[0][1:]
                block = [f"{self.first_words[k].capitalize()} {head}", *block[1:]]
            paragraphs.append(_one_sentence(block) if self.long else " ".join(block))
        if self.title:
            paragraphs[0] = f"<<{self.title}>>\n{paragraphs[0]}"
        closing = [*self.lines, *self.bullets, *([self.last] if self.last else [])]
        if closing:
            paragraphs[-1] = "\n".join([paragraphs[-1], *closing])
        return self.separator.join(paragraphs)

    def render(self) -> str:
        if self.fixed is not None:
            return self.fixed
        if self.as_json:
            text = json.dumps({"answer": " ".join([*self.extra, *self.sentences] or [self.filler(0)])})
        elif self.twice:
            text = self._body() + "\n******\n" + self._body(variant=1)
        else:
            text = self._body()
        if self.tail:
            text = "\n".join([text, *self.tail])
        if self.end:
            text = f"{text} {self.end}"
        if self.lead:
            text = "\n".join([*self.lead, text])
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        elif self.case == "title":
            text = re.sub(r"[^\W\d_]+", lambda m: m.group(0).capitalize(), text)
        if self.quoted:
            text = f'"{text}"'
        return text
