"""Languages: detection of texts and personas, the locale every persona carries, and personas asked
for in their text's language (``persona_language: source``)."""

from __future__ import annotations

import json

import polars as pl

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.stages.data_types import load_data_types
from personahub_dagster.core.stages.ingest import Document, to_source_texts
from personahub_dagster.core.stages.language import detect_languages, in_language, language_name
from personahub_dagster.core.stages.parsing import words
from personahub_dagster.core.stages.personas import persona_to_persona, text_to_persona
from personahub_dagster.core.stages.prompts import bundled_assets_dir, load_prompt
from personahub_dagster.core.stages.synthesis import synthesize
from tests.support.fake_openai import FakeOpenAI

TEXTS = {
    "fr": "Après douze ans comme infirmière de nuit en pédiatrie, je peux vous dire que les parents "
    "posent toujours les mêmes questions à trois heures du matin.",
    "de": "Unser Verein hat im letzten Herbst jedes Spiel verloren. In dieser Saison trainieren die "
    "Kinder zweimal pro Woche, und der Trainer achtet vor allem auf den Spaß.",
    "es": "El banco central mantuvo los tipos de interés por tercera reunión consecutiva, mientras la "
    "inflación de los alimentos sigue por encima del objetivo.",
    "ja": "日本の高校で数学を教えて二十年になります。生徒たちは図形の問題が一番苦手です。",
    "ru": "Наша сельская больница наконец получила портативный аппарат УЗИ. Раньше пациентов возили в город.",
    "pt": "A receita do pão de fermentação natural exige paciência: a massa descansa a noite inteira "
    "na geladeira antes de ir ao forno.",
    "en": "Our rural clinic finally got a portable ultrasound machine. Before, patients drove two hours.",
}
PERSONAS = {
    "fr": "Une infirmière de nuit qui travaille depuis douze ans dans un service de pédiatrie.",
    "en": "A night-shift pediatric nurse who has answered worried parents for twelve years.",
}


def test_texts_of_many_languages_are_told_apart():
    assert detect_languages(list(TEXTS.values())) == list(TEXTS)
    assert detect_languages(["", "12345 678"]) == ["und", "und"]
    assert language_name("fr") == "French" and language_name("ja") == "Japanese"


def test_ingest_stores_each_texts_language():
    docs = [Document(f"mem://{lang}", lang, text) for lang, text in TEXTS.items()]
    rows, skipped = to_source_texts(docs, "2026-01-01")
    assert not skipped
    assert dict(zip(rows["doc_id"], rows["language"], strict=True)) == {lang: lang for lang in TEXTS}


def test_words_of_any_script_count():
    assert words("Une infirmière aujourd'hui") == ["une", "infirmière", "aujourd'hui"]
    assert len(words("日本の高校")) == 5  # one word a character: no spaces to split on
    assert words("Учитель математики") == ["учитель", "математики"]


def test_the_language_instruction_leaves_english_prompts_as_they_were():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Who?"}]
    assert in_language(messages, "en") == messages and in_language(messages, "und") == messages
    french = in_language(messages, "fr")
    assert french[0] == messages[0] and french[1]["content"].endswith("Write your answer in French.")
    assert messages[1]["content"] == "Who?"  # not changed in place


def answers_in_the_language_asked(_n: int, body: dict) -> tuple[str, str]:
    asked_french = body["messages"][-1]["content"].endswith("Write your answer in French.")
    return "ok", PERSONAS["fr" if asked_french else "en"]


def texts_frame(*langs: str, stored: bool = True) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "text_id": [f"t-{lang}" for lang in langs],
            "text": [TEXTS[lang] for lang in langs],
            "language": [lang if stored else None for lang in langs],
        }
    )


def test_personas_keep_their_texts_locale_and_are_english_by_default(make_gateway):
    with FakeOpenAI(answers_in_the_language_asked) as server:
        out = text_to_persona(
            texts_frame("fr", "en", stored=False),  # rows ingested before languages were stored
            make_gateway(server),
            load_prompt("text_to_persona"),
            perspectives=["read"],
            partition="x",
        )
    assert not any("Write your answer in" in str(r["messages"]) for r in server.requests)
    rows = out.rows.sort("source_text_id")
    assert rows["locale"].to_list() == ["en", "fr"] and rows["language"].to_list() == ["en", "en"]


def test_source_mode_asks_for_the_texts_language_and_rejects_another(make_gateway):
    with FakeOpenAI(answers_in_the_language_asked) as server:
        out = text_to_persona(
            texts_frame("fr", "en"),
            make_gateway(server),
            load_prompt("text_to_persona"),
            perspectives=["read", "like"],
            partition="x",
            persona_language="source",
        )
    by_text = {r["source_text_id"]: r for r in out.rows.iter_rows(named=True)}
    assert by_text["t-fr"]["persona"] == PERSONAS["fr"]
    assert (by_text["t-fr"]["locale"], by_text["t-fr"]["language"]) == ("fr", "fr")
    assert (by_text["t-en"]["locale"], by_text["t-en"]["language"]) == ("en", "en")

    with FakeOpenAI(lambda _n, _body: ("ok", PERSONAS["en"])) as server:  # a model that ignores the ask
        out = text_to_persona(
            texts_frame("fr"),
            make_gateway(server, model="openai/fake-english-only"),
            load_prompt("text_to_persona"),
            perspectives=["read"],
            partition="x",
            persona_language="source",
        )
    assert out.rows.is_empty()
    assert out.rejects["reason"].to_list() == ["wrong_language: asked fr, got en"]


def test_related_personas_inherit_the_locale_and_its_language(make_gateway):
    seeds = rows_frame(
        "personas",
        [
            {
                "persona_id": "p-fr",
                "persona": PERSONAS["fr"],
                "method": "text",
                "source_text_id": "t-fr",
                "hop": 0,
                "locale": "fr",
                "created_at": now_utc(),
                "partition": "x",
            }
        ],
    )
    replies = iter(
        [
            "Un pédiatre qui dirige le service de nuit et forme les jeunes internes.",
            "Une pharmacienne de quartier qui conseille les familles du même immeuble.",
        ]
    )
    with FakeOpenAI(lambda _n, _body: ("ok", next(replies))) as server:
        out = persona_to_persona(
            seeds,
            make_gateway(server),
            load_prompt("persona_to_persona"),
            hops=2,
            partition="x",
            persona_language="source",
        )
    assert all(r["messages"][-1]["content"].endswith("Write your answer in French.") for r in server.requests)
    assert out.rows["locale"].to_list() == ["fr", "fr"] and out.rows["language"].to_list() == ["fr", "fr"]


def test_synthesis_in_the_personas_language(make_gateway):
    article = {
        "fr": "Title: Le pain au levain\n\nLe pain au levain demande de la patience. La pâte repose toute "
        "la nuit au frais, puis elle cuit vingt minutes avec de la vapeur pour obtenir une croûte dorée "
        "et croustillante. Le levain lui-même se nourrit chaque jour de farine et d'eau tiède, et il "
        "donne au pain son goût légèrement acide que les boulangers du quartier aiment tant.",
        "en": "Title: Sourdough at home\n\nSourdough bread asks for patience. The dough rests all night "
        "in the fridge, then bakes for twenty minutes with steam for a golden, crackling crust. The "
        "starter itself is fed every day with flour and warm water, and it gives the bread the mild "
        "sour taste that the bakers of the neighbourhood love so much.",
    }

    def reply(_n: int, body: dict) -> tuple[str, str]:
        return "ok", article["fr" if body["messages"][-1]["content"].endswith("in French.") else "en"]

    personas = pl.DataFrame(
        {
            "persona_id": ["p-fr", "p-en", "p-old"],
            "persona": [PERSONAS["fr"], PERSONAS["en"], "A baker who opens at five every morning."],
            "source_text_id": ["t-fr", "t-en", "t-old"],
            "locale": ["fr", "en", None],  # p-old: a persona made before locales were recorded
        }
    )
    with FakeOpenAI(reply) as server:
        out = synthesize(
            personas,
            make_gateway(server),
            load_data_types()["knowledge_text"],
            load_prompt("knowledge_text"),
            modes=["zero_shot"],
            partition="p",
            stage="knowledge_texts",
            in_persona_language=True,
        )
    assert out.rejects.is_empty(), out.rejects["reason"].to_list()
    assert dict(zip(out.rows["persona_id"], out.rows["language"], strict=True)) == {
        "p-fr": "fr",
        "p-en": "en",
        "p-old": "en",
    }


def test_the_multilingual_sample_corpus_is_what_its_ids_say():
    docs = [json.loads(line) for line in (bundled_assets_dir() / "corpus" / "multilingual.jsonl").open()]
    assert detect_languages([d["text"] for d in docs]) == [d["id"].split("-")[0] for d in docs]
