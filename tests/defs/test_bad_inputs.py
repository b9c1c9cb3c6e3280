"""The bad-input corpus (tests/fixtures/bad_inputs, plus a document over 10 MB made here so the repo
stays small): each bad input gets a clear reason in ``rejects``; none stops a run or reaches the hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.stages.ingest import read_documents, to_source_texts
from personahub_dagster.defs import resources
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.resources import EmbedderResource, LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.ingest import raw_texts
from personahub_dagster.defs.stages.personas import expanded_personas, text_personas
from tests.support.fake_openai import FakeOpenAI

BAD = Path(__file__).parents[1] / "fixtures" / "bad_inputs"
DAY = "2026-11-20"

# file (or file#line) → the start of its reason; every one must be present.
EXPECTED = {
    "empty.txt": "empty file",
    "empty.jsonl": "empty file",
    "whitespace_only.txt": "text shorter than 20 characters",
    "whitespace_only.jsonl": "no documents in the file",
    "binary.txt": "binary file (NUL bytes)",
    "undecodable.txt": "invalid UTF-8 at byte",
    "broken_lines.jsonl#L2": "invalid JSON",
    "broken_lines.jsonl#L3": "invalid JSON",
    "broken_lines.jsonl#L4": "no string field 'text'",
    "broken_lines.jsonl#L5": "no string field 'text'",
    "page_with_scripts.html": "html: dropped non-text blocks (1 head, 1 noscript, 2 script, 1 style)",
    "html_in_jsonl.jsonl#L1": "html: dropped non-text blocks (1 script)",
    "magazine_page.html": "html: dropped non-text blocks (1 head);",  # … N characters of boilerplate
    "prompt_injection.jsonl#L1": "prompt injection suspected: 'Ignore previous instructions'",
    "prompt_injection.jsonl#L2": "prompt injection suspected: 'disregard all prior instructions'",
    "notes.docx": "unsupported file type .docx",
    "not_really.parquet": "unreadable file",
    "no_text_column.parquet": "no column 'text' (columns: content, id)",
    "huge.txt": "text of 11,",
}
# latin1.txt (a whole file) and broken_lines.jsonl's line 6 (one line of a UTF-8 file) are Latin-1: read
GOOD = {
    "ok-1",
    "ok-2",
    "nul",
    "html-1",
    "about-injection",
    "page_with_scripts",
    "magazine_page",
    "latin1",
    "bad-utf8",
}
# what a real page carries around its article: none of it may reach a persona prompt
BOILERPLATE = [
    "cookies",
    "Subscribe to the newsletter",
    "Shop our store",
    "All rights reserved",
    "lighthouse",
]


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "inbox" / DAY
    shutil.copytree(BAD, folder)
    paragraph = "A line of a very long server log that somebody pasted into a web page. " * 10 + "\n"
    (folder / "huge.txt").write_text(paragraph * (11_000_000 // len(paragraph) + 1))
    assert (folder / "huge.txt").stat().st_size >= 11_000_000
    return folder


def reasons(skipped) -> dict[str, str]:
    return {s.source_uri.split("/")[-1]: s.reason for s in skipped}


def test_every_bad_input_has_a_clear_reason_and_good_text_survives(corpus):
    docs, skipped = read_documents([corpus])
    texts, more = to_source_texts(docs, DAY, max_texts=None)
    got = reasons(skipped + more)
    for name, reason in EXPECTED.items():
        assert got.get(name, "").startswith(reason), (name, got.get(name))
    assert set(texts["doc_id"]) == GOOD
    page = texts.filter(pl.col("doc_id") == "page_with_scripts")["text"][0]
    assert "Sailors and shellfish foragers" in page and "fetch(" not in page and "alert" not in page
    assert "secret" not in texts.filter(pl.col("doc_id") == "html-1")["text"][0]
    article = texts.filter(pl.col("doc_id") == "magazine_page")["text"][0]
    assert "Neap tides, a week later" in article and "Spring tides follow new and full moons" in article
    assert not [b for b in BOILERPLATE if b in article]
    nul = texts.filter(pl.col("doc_id") == "nul")["text"][0]
    assert "\x00" not in nul and "\x07" not in nul and "tides" in nul


def obeys_injections(_n: int, body: dict) -> tuple[str, str]:
    """A gullible model: it does whatever a text tells it to."""
    prompt = body["messages"][-1]["content"].lower()
    if "ignore previous instructions" in prompt or "disregard all prior" in prompt:
        return "ok", "PWNED PWNED PWNED"
    return "ok", "A marine biologist who studies tides and teaches coastal safety courses."


def test_a_run_over_the_bad_corpus_succeeds_and_nothing_bad_reaches_the_hub(corpus, tmp_path):
    lake_dir = tmp_path / "lake"
    with FakeOpenAI(obeys_injections) as server:
        result = dg.materialize(
            [raw_texts, text_personas, expanded_personas, persona_hub],
            partition_key=DAY,
            resources={
                "lake": LakeResource(path=str(lake_dir), inbox=str(tmp_path / "inbox")),
                "llm": LLMResource(model="openai/fake", api_base=server.base_url, api_key="sk-x"),
                "embedder": EmbedderResource(),
                "prompts": PromptsResource(),
                "ray_cluster": resources.RayClusterResource(),  # not touched: the hub grows in this process
            },
            run_config={
                "ops": {
                    "raw_texts": {"config": {"max_texts": None}},
                    "text_personas": {"config": {"perspectives": ["read"]}},
                    "expanded_personas": {"config": {"hops": 1}},
                }
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert result.success
    lake = Lake(lake_dir)
    rejects = lake.read("rejects", "stage = 'raw_texts'")
    got = {uri.split("/")[-1]: r for uri, r in rejects.select("input_id", "reason").iter_rows()}
    for name, reason in EXPECTED.items():
        assert got.get(name, "").startswith(reason), (name, got.get(name))
    assert lake.read("source_texts").height == len(GOOD)
    hub = lake.read("hub")
    assert hub.height > 0 and not hub["persona"].str.contains("PWNED").any()
    assert not any("ignore previous instructions" in str(b).lower() for b in server.requests)
    prompts = [b["messages"][-1]["content"] for b in server.requests]
    assert any("Neap tides, a week later" in p for p in prompts)  # the article reached a prompt …
    assert not [b for b in BOILERPLATE if any(b in p for p in prompts)]  # … its page's template did not
