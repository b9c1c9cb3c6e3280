"""The registry of synthesized data types (``assets/data_types.yaml``).

A data type is data: a prompt template, exemplars, a validator spec and a few defaults. The pipeline
makes one asset per entry, so a user adds a data type by adding a prompt file and an entry — in the
bundled registry or in ``data_types.yaml`` next to their own prompts folder, whose entries override
the bundled ones by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from personahub_dagster.core.prompts import bundled_assets_dir
from personahub_dagster.core.validators import Validator, build_validator

MODES = ("zero_shot", "few_shot", "persona_few_shot")
REGISTRY = "data_types.yaml"
_KEYS = {
    "asset",
    "release",
    "description",
    "template",
    "exemplars",
    "validator",
    "variables",
    "world",
    "params",
    "n_personas",
    "modes",
    "on_truncation",
}
TRUNCATION = ("reject", "trim")


@dataclass(frozen=True)
class DataType:
    """One kind of persona-driven data (see the registry file's header for the fields)."""

    name: str
    asset: str
    release: str
    description: str
    template: str
    exemplars: str | None
    validator_spec: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)
    world: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n_personas: int = 3
    modes: tuple[str, ...] = MODES
    on_truncation: str = "reject"  # an answer cut off by max_tokens: reject it, or trim to its last sentence
    base_dir: str = ""  # the registry file's folder: relative paths (``world``) start there

    def validator(self) -> Validator:
        return build_validator(self.validator_spec)

    def world_text(self) -> str | None:
        """The world background, read from ``world`` (relative to the registry's folder)."""
        if not self.world:
            return None
        path = Path(self.world)
        if not path.is_absolute():
            path = Path(self.base_dir or bundled_assets_dir()) / path
        return path.read_text(encoding="utf-8")

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any], source: Path) -> DataType:
        if unknown := set(entry) - _KEYS:
            raise ValueError(f"{source}: data type {name!r} has unknown keys {sorted(unknown)}")
        if "template" not in entry or "validator" not in entry:
            raise ValueError(f"{source}: data type {name!r} needs a 'template' and a 'validator'")
        modes = tuple(entry.get("modes", MODES))
        if bad := [m for m in modes if m not in MODES]:
            raise ValueError(f"{source}: data type {name!r}: unknown modes {bad}; choose from {MODES}")
        if any(m != "zero_shot" for m in modes) and not entry.get("exemplars"):
            raise ValueError(f"{source}: data type {name!r}: the few-shot modes need 'exemplars'")
        if entry.get("on_truncation", "reject") not in TRUNCATION:
            raise ValueError(f"{source}: data type {name!r}: on_truncation must be one of {TRUNCATION}")
        data_type = cls(
            name=name,
            asset=entry.get("asset", f"{name}s"),
            release=entry.get("release", name),
            description=entry.get("description", name.replace("_", " ")),
            template=entry["template"],
            exemplars=entry.get("exemplars"),
            validator_spec=dict(entry["validator"]),
            variables=dict(entry.get("variables") or {}),
            world=entry.get("world"),
            params=dict(entry.get("params") or {}),
            n_personas=int(entry.get("n_personas", 3)),
            modes=modes,
            on_truncation=entry.get("on_truncation", "reject"),
            base_dir=str(source.parent),
        )
        data_type.validator()  # a bad validator spec fails when the registry loads, not mid-run
        return data_type


def load_data_types(prompts_dir: str | None = None) -> dict[str, DataType]:
    """The bundled registry, updated with ``<prompts_dir>/../data_types.yaml`` when there is one."""
    files = [bundled_assets_dir() / REGISTRY]
    if prompts_dir and (user := Path(prompts_dir).parent / REGISTRY).is_file():
        files.append(user)
    types: dict[str, DataType] = {}
    for path in files:
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{path}: expected a mapping of data type names to entries")
        for name, entry in entries.items():
            types[name] = DataType.from_entry(name, entry or {}, path)
    assets = [t.asset for t in types.values()]
    if dupes := sorted({a for a in assets if assets.count(a) > 1}):
        raise ValueError(f"data types share asset names {dupes}")
    return types
