"""Texts in other encodings are read, not lost: Latin-1 French, Windows-1252 with curly quotes, Shift-JIS
Japanese, UTF-16 with its byte-order mark — each decoded by detection and its encoding kept in
``source_texts``; a binary file and bytes no encoding reads stay clear skips."""

from __future__ import annotations

import codecs
import random

import pytest

from personahub_dagster.core.stages.encoding import decode
from personahub_dagster.core.stages.ingest import read_documents, to_source_texts

FRENCH = (
    "Le jardin communautaire de la rue des Écoles accueille les habitants du quartier chaque été. "
    "On y cultive des légumes, des fleurs et des herbes aromatiques ; les enfants apprennent à "
    "reconnaître les saisons et les aînés partagent leur expérience."
)
QUOTES = "“Smart quotes” and an em dash — the café’s menu costs €5 per person, naïvely priced."
JAPANESE = (
    "地域の庭は、近所の人々が集まって野菜や花を育てる場所です。子どもたちは季節の移り変わりを学び、"
    "高齢者は知恵を分かち合います。"
)
CASES = [
    ("latin1.txt", FRENCH.encode("latin-1"), FRENCH),
    ("cp1252.md", QUOTES.encode("cp1252"), QUOTES),
    ("shift_jis.txt", JAPANESE.encode("shift_jis"), JAPANESE),
    ("utf16le.txt", codecs.BOM_UTF16_LE + (FRENCH + " Bis.").encode("utf-16-le"), FRENCH + " Bis."),
    ("utf16be.txt", codecs.BOM_UTF16_BE + (JAPANESE + "再。").encode("utf-16-be"), JAPANESE + "再。"),
]


@pytest.mark.parametrize(("name", "raw", "text"), CASES)
def test_each_encoding_is_read_as_the_text_it_is(name, raw, text):
    got, encoding = decode(raw)
    assert got == text and encoding != "utf-8"


def test_files_in_other_encodings_become_texts_with_their_encoding(tmp_path):
    for name, raw, _ in CASES:
        (tmp_path / name).write_bytes(raw)
    (tmp_path / "plain.txt").write_text("A plain UTF-8 note about the history of printing presses.")
    (tmp_path / "picture.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    rng = random.Random(3)
    (tmp_path / "noise.txt").write_bytes(bytes(rng.randrange(0x80, 0x100) for _ in range(400)))
    docs, skipped = read_documents([tmp_path])
    reasons = {s.source_uri.rsplit("/", 1)[-1]: s.reason for s in skipped}
    assert reasons["picture.txt"].startswith("binary file (NUL bytes)")
    assert (
        reasons["noise.txt"].startswith("invalid UTF-8 at byte")
        and "no encoding reads it" in reasons["noise.txt"]
    )
    texts, _ = to_source_texts(docs, "2026-10-01")
    by_doc = {r["doc_id"]: r for r in texts.iter_rows(named=True)}
    for name, _, text in CASES:
        row = by_doc[name.rsplit(".", 1)[0]]
        assert row["text"] == text and row["encoding"] not in (None, "utf-8"), (name, row["encoding"])
    assert by_doc["latin1"]["language"] == "fr" and by_doc["shift_jis"]["language"] == "ja"
    assert by_doc["plain"]["encoding"] == "utf-8"


def test_a_jsonl_file_in_latin1_is_read_line_by_line(tmp_path):
    lines = [f'{{"id": "fr-{i}", "text": "{FRENCH} ({i})"}}' for i in range(3)]
    (tmp_path / "fr.jsonl").write_bytes("\n".join(lines).encode("latin-1"))
    (tmp_path / "fr16.jsonl").write_bytes(codecs.BOM_UTF16_LE + "\n".join(lines).encode("utf-16-le"))
    docs, skipped = read_documents([tmp_path])
    assert not skipped and len(docs) == 6
    assert all(d.text.startswith(FRENCH) for d in docs)
    assert {d.encoding for d in docs} == {"cp1252", "utf-16"}
