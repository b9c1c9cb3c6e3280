"""Prompt templates and few-shot exemplars, loaded from data files (``assets/prompts``, ``assets/exemplars``).

Prompts are data, not code: a user tunes wording, perspectives or sampling parameters by editing YAML,
or by pointing ``prompts_dir`` at a folder of their own files, which override the bundled ones by name.
Templates are Jinja with ``StrictUndefined`` so that a misspelt variable fails loudly instead of
sending an empty slot to a paid model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from personahub_dagster.core.config.ids import digest
from personahub_dagster.core.config.settings import settings

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def bundled_assets_dir() -> Path:
    """The repository's ``assets/`` folder (overridable with ``PERSONAHUB_ASSETS``)."""
    folder = settings().assets
    return Path(folder) if folder else Path(__file__).resolve().parents[3] / "assets"


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt: system + user Jinja templates, default sampling params and free-form extras."""

    name: str
    system: str
    user: str
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def template_hash(self) -> str:
        """Identifies the template version; stored on every row it produced."""
        return digest(self.system, self.user, self.params)[:16]

    def system_message(self, **variables: Any) -> list[dict[str, str]]:
        """The system turn alone (empty list when the template has none)."""
        if not self.system.strip():
            return []
        return [{"role": "system", "content": _compiled(self.system).render(**variables).strip()}]

    def render(self, **variables: Any) -> list[dict[str, str]]:
        messages = []
        if self.system.strip():
            messages.append({"role": "system", "content": _compiled(self.system).render(**variables).strip()})
        messages.append({"role": "user", "content": _compiled(self.user).render(**variables).strip()})
        return messages


@lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """Compile a template once: compiling is ~20x the cost of rendering, and a stage renders the same
    template for every one of its requests."""
    return _ENV.from_string(source)


def _search_path(prompts_dir: str | None, sub: str) -> list[Path]:
    paths = [Path(prompts_dir)] if prompts_dir else []
    return [*paths, bundled_assets_dir() / sub]


def _find(name: str, prompts_dir: str | None, sub: str) -> Path:
    for folder in _search_path(prompts_dir, sub):
        for ext in (".yaml", ".yml"):
            candidate = folder / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(p) for p in _search_path(prompts_dir, sub))
    raise FileNotFoundError(f"no {sub[:-1]} named {name!r} in {searched}")


@lru_cache(maxsize=64)
def load_prompt(name: str, prompts_dir: str | None = None) -> PromptTemplate:
    """Load ``<name>.yaml`` from ``prompts_dir`` if it has one, else from the bundled prompts."""
    path = _find(name, prompts_dir, "prompts")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "user" not in data:
        raise ValueError(f"{path}: a prompt file needs a 'user' template")
    extras = {k: v for k, v in data.items() if k not in {"system", "user", "params"}}
    return PromptTemplate(
        name=name,
        system=data.get("system", ""),
        user=data["user"],
        params=dict(data.get("params") or {}),
        extras=extras,
        source=str(path),
    )


@lru_cache(maxsize=64)
def load_exemplars(name: str, prompts_dir: str | None = None) -> tuple[dict[str, str], ...]:
    """Few-shot exemplars: a YAML list of ``{output}`` mappings (an optional ``persona`` is used as is
    by the persona-enhanced mode; otherwise Text-to-Persona supplies one)."""
    path = _find(name, prompts_dir and str(Path(prompts_dir).parent / "exemplars"), "exemplars")
    items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and "output" in i for i in items):
        raise ValueError(f"{path}: exemplars must be a list of mappings with an 'output' key")
    return tuple(items)
