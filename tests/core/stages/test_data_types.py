"""The data type registry: every bundled type renders the prompt it should in each mode (snapshots of
the rendered prompts), and a user adds a data type with files only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from personahub_dagster.core.stages.data_types import MODES, DataType, load_data_types
from personahub_dagster.core.stages.prompts import load_exemplars, load_prompt

SNAPSHOTS = Path(__file__).parents[2] / "snapshots" / "prompts"
PERSONA = "A harbour pilot in Rotterdam who trains apprentices and restores old barges."
TYPES = load_data_types()


def render(dt: DataType, mode: str) -> list[dict[str, str]]:
    examples = [
        {
            "output": ex["output"],
            **({"persona": f"Exemplar persona {i}."} if mode == "persona_few_shot" else {}),
        }
        for i, ex in enumerate(load_exemplars(dt.exemplars))
    ]
    slots = {**dt.variables, **({"world": dt.world_text()} if dt.world else {})}
    return load_prompt(dt.template).render(
        persona=PERSONA, mode=mode, examples=examples if mode != "zero_shot" else [], **slots
    )


CASES = [(name, mode) for name, dt in TYPES.items() for mode in dt.modes]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_rendered_prompt_matches_its_snapshot(name, mode):
    """A change to a template shows up as a diff of the exact text a model will see
    (regenerate with PERSONAHUB_UPDATE_SNAPSHOTS=1 after an intended change)."""
    text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in render(TYPES[name], mode)) + "\n"
    path = SNAPSHOTS / f"{name}.{mode}.txt"
    if os.environ.get("PERSONAHUB_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_each_mode_builds_the_prompt_it_should(name, mode):
    dt = TYPES[name]
    user = render(dt, mode)[-1]["content"]
    outputs = [ex["output"] for ex in load_exemplars(dt.exemplars)]
    assert f"Persona: {PERSONA}" in user
    if mode == "zero_shot":
        assert not any(out in user for out in outputs)
    else:
        assert all(out in user for out in outputs)
        # persona-enhanced: each exemplar's persona right before its output; plain few-shot: none
        for i, out in enumerate(outputs):
            pair = f"Persona: Exemplar persona {i}.\n{out}"
            assert (pair in user) == (mode == "persona_few_shot")
    if dt.world:
        assert "The Ember Isles" in user and "Tidecaller" in user


def test_registry_holds_the_papers_six_types():
    assert {t.release for t in TYPES.values()} >= {
        "math",
        "reasoning",
        "instruction",
        "knowledge",
        "npc",
        "tool",
    }
    assert all(t.modes == MODES for t in TYPES.values())


def test_a_user_adds_a_data_type_with_files_only(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "exemplars").mkdir()
    (tmp_path / "prompts" / "recipe.yaml").write_text(
        textwrap.dedent(
            """\
            user: |
              {% for ex in examples %}{{ ex.output }}
              {% endfor %}Persona: {{ persona }}
              Write a {{ cuisine }} recipe this persona would cook. Recipe:
            params: {temperature: 0.5}
            """
        )
    )
    (tmp_path / "exemplars" / "recipe.yaml").write_text("- output: 'Recipe: boil 2 eggs for 7 minutes.'\n")
    (tmp_path / "data_types.yaml").write_text(
        textwrap.dedent(
            """\
            recipe:
              release: recipe
              template: recipe
              exemplars: recipe
              modes: [zero_shot, few_shot]
              validator: {kind: text, label: "Recipe:", min_words: 5}
              variables: {cuisine: Dutch}
            """
        )
    )
    prompts_dir = str(tmp_path / "prompts")
    types = load_data_types(prompts_dir)
    assert types["recipe"].asset == "recipes" and set(types) >= set(TYPES)
    assert types["recipe"].validator()("Recipe: fry onions, add potatoes and kale.")[1] is None
    # and the Dagster definitions grow an asset for it
    code = (
        "from personahub_dagster.definitions import defs;"
        "print(sorted(k.to_user_string() for k in defs().resolve_all_asset_keys()))"
    )
    env = {**os.environ, "PERSONAHUB_PROMPTS_DIR": prompts_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'recipes'" in out.stdout and "'math_problems'" in out.stdout


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"template": "x", "validator": {}, "colour": "red"}, "key 'colour': Extra inputs are not permitted"),
        ({"validator": {}}, "key 'template': Field required"),
        ({"template": "x", "validator": {}, "modes": ["ten_shot"]}, "key 'modes.0': Input should be"),
        ({"template": "x", "validator": {}, "modes": ["zero_shot"], "n_personas": "many"}, "n_personas"),
        ({"template": "x", "validator": {}, "modes": ["few_shot"]}, "need 'exemplars'"),
        ({"template": "x", "validator": {"kind": "text", "size": 3}, "modes": ["zero_shot"]}, "bad options"),
        (
            {"template": "x", "validator": {}, "modes": ["zero_shot"], "on_truncation": "hope"},
            "on_truncation",
        ),
    ],
)
def test_bad_registry_entries_fail_when_loaded(entry, message):
    with pytest.raises(ValueError, match=message):
        DataType.from_entry("x", entry, Path("data_types.yaml"))


def test_a_registry_error_names_the_file_the_key_and_the_line(tmp_path):
    (tmp_path / "prompts").mkdir()
    registry = tmp_path / "data_types.yaml"
    registry.write_text(
        textwrap.dedent(
            """\
            recipe:
              template: recipe
              validator: {kind: text}
              modes:
                - zero_shot
                - ten_shot
            """
        )
    )
    with pytest.raises(ValueError) as err:
        load_data_types(str(tmp_path / "prompts"))
    message = str(err.value)
    assert message.startswith(f"{registry}:6: data type 'recipe', key 'modes.1': Input should be")
    assert "\n" not in message
