"""Prompts are data: bundled templates render, user folders override them, mistakes fail loudly."""

from __future__ import annotations

import jinja2
import pytest

from personahub_dagster.core.stages.prompts import load_prompt


def test_bundled_templates_render():
    t2p = load_prompt("text_to_persona")
    messages = t2p.render(
        text="A recipe for dal.",
        perspective="read",
        perspective_phrase=t2p.extras["perspectives"]["read"],
        granularity_instruction=t2p.extras["granularity"]["fine"],
    )
    assert messages[0]["role"] == "system" and "A recipe for dal." in messages[1]["content"]
    assert set(t2p.extras["perspectives"]) == {"read", "write", "like", "dislike"}
    # the synthesis templates, mode by mode: tests/test_data_types.py


def test_a_user_folder_overrides_by_name(tmp_path):
    (tmp_path / "text_to_persona.yaml").write_text(
        "user: 'Who reads {{ text }}?'\nparams: {temperature: 0}\n"
    )
    custom = load_prompt("text_to_persona", str(tmp_path))
    assert custom.render(text="X") == [{"role": "user", "content": "Who reads X?"}]
    assert custom.template_hash != load_prompt("text_to_persona").template_hash
    assert load_prompt("math_problem", str(tmp_path)).source.endswith("assets/prompts/math_problem.yaml")


def test_template_mistakes_fail_loudly(tmp_path):
    (tmp_path / "broken.yaml").write_text("user: 'Hello {{ missing }}'\n")
    with pytest.raises(jinja2.UndefinedError):
        load_prompt("broken", str(tmp_path)).render()
    with pytest.raises(FileNotFoundError, match="no prompt named 'nope'"):
        load_prompt("nope")
