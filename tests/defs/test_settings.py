"""One place for settings: every PERSONAHUB_* variable in one model, documented in one table, reachable
from the launchpad through resources built from their config."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from personahub_dagster.core.config.settings import (
    Settings,
    SettingsError,
    env_name,
    settings,
    settings_table,
)
from personahub_dagster.core.hub.config import DedupConfig
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.defs.hub.persona_hub import PersonaHubConfig
from personahub_dagster.defs.resources import LLMResource, default_resources

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_table_is_the_settings_model():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in doc


def test_no_module_reads_a_personahub_variable_but_the_settings():
    readers = []
    for path in (ROOT / "personahub_dagster").rglob("*.py"):
        text = path.read_text()
        reads = (
            r"environ\.get\([\"']PERSONAHUB_|getenv\([\"']PERSONAHUB_"
            r"|environ\[[\"']PERSONAHUB_\w+[\"']\](?!\s*=)"
        )
        if re.search(reads, text):  # the CLI's --lake *sets* PERSONAHUB_LAKE for the definitions
            readers.append(path.name)
    assert readers == []
    names = set(
        re.findall(
            r"PERSONAHUB_[A-Z_]+", "".join(p.read_text() for p in (ROOT / "personahub_dagster").rglob("*.py"))
        )
    )
    known = {env_name(n) for n in Settings.model_fields}
    assert names - known - {"PERSONAHUB_"} == set()  # every name the code mentions is a setting


def test_a_bad_value_is_one_line_naming_the_variable_and_never_the_key():
    with pytest.raises(SettingsError) as err:
        settings({"PERSONAHUB_SHARDS": "two", "PERSONAHUB_API_KEY": "sk-secret-123"})
    assert str(err.value).startswith("PERSONAHUB_SHARDS=two: ") and "\n" not in str(err.value)
    with pytest.raises(SettingsError) as err:
        settings({"PERSONAHUB_RATE_SHARE": "2"})
    assert "PERSONAHUB_RATE_SHARE=2" in str(err.value)
    env = {**os.environ, "PERSONAHUB_LLM_MODE": "sometimes"}
    out = subprocess.run(
        [sys.executable, "-m", "personahub_dagster.cli", "settings"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "personahub: PERSONAHUB_LLM_MODE=sometimes: Input should be 'online' or 'batch'"
    ]


def test_settings_reach_the_resources_and_secrets_stay_names():
    current = settings(
        {
            "PERSONAHUB_MODEL": "openai/m",
            "PERSONAHUB_API_KEY": "sk-secret-123",
            "PERSONAHUB_CACHE": "postgresql://u:pw@h/db",
            "PERSONAHUB_RPM": "600",
            "PERSONAHUB_SHARDS": "",  # empty: unset
        }
    )
    assert current.shards == 1 and "sk-secret-123" not in repr(current)
    res = default_resources(current)
    assert res["llm"].model == "openai/m" and res["llm"].rpm == 600
    assert "sk-secret-123" not in repr(res["llm"]) and "pw" not in repr(res["lake"])


def test_every_gateway_and_dedup_knob_is_in_the_launchpad():
    gateway_knobs = set(LLMConfig.model_fields) - {"run_id"}
    assert gateway_knobs == set(LLMResource.model_fields)
    for name, field in LLMResource.model_fields.items():  # one definition: same defaults and words
        assert field.default == LLMConfig.model_fields[name].default, name
        assert field.description == LLMConfig.model_fields[name].description, name
    assert gateway_knobs <= set(Settings.model_fields)  # and each one a PERSONAHUB_* variable
    assert {f.name for f in dataclasses.fields(DedupConfig)} <= set(PersonaHubConfig.model_fields)
    config = PersonaHubConfig(ann_nprobe=7, block_size=128)
    assert config.dedup() == DedupConfig(ann_nprobe=7, block_size=128)


def test_variable_names_are_read_whatever_their_case():
    assert settings({"personahub_shards": "3", "PERSONAHUB_LLM_MODE": "batch"}).shards == 3
    assert settings({"personahub_llm_mode": "batch"}).mode == "batch"
