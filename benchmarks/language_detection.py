"""Language detection for texts and personas: lingua's low- and high-accuracy modes against the English
stopword test the persona filter used before (the same-run baseline: it can only say English or not).

Then the check ``persona_language: source`` makes of each persona: is it in the language asked, or in
English (the way a model fails)? Labelled inputs, written for this benchmark: the multilingual sample
corpus (paragraphs) and persona-length sentences in eight languages. Accuracy, time per 1,000 inputs,
and each detector's resident memory.

    python benchmarks/language_detection.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PERSONAS = {
    "en": [
        "A night-shift nurse who cares for premature babies.",
        "A retired welder who restores old motorbikes.",
        "A teacher of chemistry in a rural high school.",
        "A bookseller who runs a tiny shop by the harbour.",
    ],
    "fr": [
        "Une infirmière de nuit qui soigne des prématurés.",
        "Un soudeur à la retraite qui restaure de vieilles motos.",
        "Une professeure de chimie dans un lycée rural.",
        "Un libraire qui tient une petite boutique près du port.",
    ],
    "de": [
        "Eine Nachtschwester, die Frühgeborene betreut.",
        "Ein pensionierter Schweißer, der alte Motorräder restauriert.",
        "Eine Chemielehrerin an einer Schule auf dem Land.",
        "Ein Buchhändler mit einem kleinen Laden am Hafen.",
    ],
    "es": [
        "Una enfermera de noche que cuida a bebés prematuros.",
        "Un soldador jubilado que restaura motos antiguas.",
        "Una profesora de química en un instituto rural.",
        "Un librero que tiene una pequeña tienda junto al puerto.",
    ],
    "it": [
        "Un'infermiera notturna che si prende cura dei neonati prematuri.",
        "Un saldatore in pensione che restaura vecchie moto.",
        "Una professoressa di chimica in un liceo di campagna.",
        "Un libraio che gestisce un piccolo negozio vicino al porto.",
    ],
    "pt": [
        "Uma enfermeira noturna que cuida de bebês prematuros.",
        "Um soldador aposentado que restaura motos antigas.",
        "Uma professora de química numa escola rural.",
        "Um livreiro que tem uma pequena loja perto do porto.",
    ],
    "ja": [
        "未熟児の世話をする夜勤の看護師。",
        "古いバイクを修理する引退した溶接工。",
        "田舎の高校の化学の先生。",
        "港の近くで小さな本屋を営む店主。",
    ],
    "ru": [
        "Ночная медсестра, которая ухаживает за недоношенными детьми.",
        "Сварщик на пенсии, который реставрирует старые мотоциклы.",
        "Учительница химии в сельской школе.",
        "Книготорговец с маленьким магазином у порта.",
    ],
}


def labelled() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    corpus = ROOT / "assets" / "corpus" / "multilingual.jsonl"
    paragraphs = [(d["id"].split("-")[0], d["text"]) for d in map(json.loads, corpus.open())]
    sentences = [(lang, text) for lang, texts in PERSONAS.items() for text in texts]
    return paragraphs, sentences


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200, help="times the inputs are run for the timing")
    args = ap.parse_args()
    from lingua import LanguageDetectorBuilder

    from personahub_dagster.core.stages.parsing import is_english

    paragraphs, sentences = labelled()
    rows = []

    def run(name: str, detect, mem: float) -> None:
        for kind, items in (("paragraphs", paragraphs), ("persona sentences", sentences)):
            texts = [t for _, t in items] * args.repeat
            started = time.perf_counter()
            found = detect(texts)
            per_1k = (time.perf_counter() - started) / len(texts) * 1000
            right = sum(f == lang for f, (lang, _) in zip(found[: len(items)], items, strict=True))
            rows.append((name, kind, f"{right}/{len(items)}", f"{per_1k:.3f}", f"{mem:.0f}"))

    # the persona check of persona_language: source — the language asked, or English?
    from personahub_dagster.core.stages.language import written_in

    others = [lang for lang in PERSONAS if lang != "en"]
    cases = [(t, lang, True) for lang in others for t in PERSONAS[lang]]
    cases += [(t, lang, False) for lang in others for t in PERSONAS["en"]]
    before = rss_mb()
    [written_in(t, lang) for t, lang, _ in cases]  # builds the detectors
    memory = rss_mb() - before
    started = time.perf_counter()
    for _ in range(max(1, args.repeat // 10)):
        right = sum(written_in(t, lang) == want for t, lang, want in cases)
    per_1k = (time.perf_counter() - started) / (len(cases) * max(1, args.repeat // 10)) * 1000
    rows.append(("lingua, asked language or English", "persona sentences", f"{right}/{len(cases)}",
                 f"{per_1k:.3f}", f"{memory:.0f}"))  # fmt: skip

    # the baseline: English or not, nothing more (a non-English text is "not en", never its language)
    run("stopword test (before)", lambda ts: ["en" if is_english(t) else "?" for t in ts], 0)
    for name, builder in (
        (
            "lingua, low accuracy (default)",
            lambda: LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode(),
        ),
        ("lingua, high accuracy", lambda: LanguageDetectorBuilder.from_all_languages()),
    ):
        before = rss_mb()
        detector = builder().build()
        detector.detect_language_of("warm up")  # loads the models lazily

        def detect(texts: list[str], d=detector) -> list[str]:
            langs = d.detect_languages_in_parallel_of(texts)
            return [x.iso_code_639_1.name.lower() if x else "und" for x in langs]

        detect([t for _, t in paragraphs + sentences])
        run(name, detect, rss_mb() - before)

    print("\n| detector | inputs | right | s per 1,000 | memory MB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
