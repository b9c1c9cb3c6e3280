"""The registry of synthesized data types (``assets/data_types.yaml``).

A data type is data: a prompt template, exemplars, a validator spec and a few defaults. The pipeline
makes one asset per entry, so a user adds a data type by adding a prompt file and an entry — in the
bundled registry or in ``data_types.yaml`` next to their own prompts folder, whose entries override
the bundled ones by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from personahub_dagster.core.stages.prompts import bundled_assets_dir
from personahub_dagster.core.stages.validators import Validator, build_validator

MODES = ("zero_shot", "few_shot", "persona_few_shot")
REGISTRY = "data_types.yaml"
Mode = Literal["zero_shot", "few_shot", "persona_few_shot"]


class RegistryError(ValueError):
    """A registry entry that cannot be used: ``file:line: data type 'x', key 'y': why``."""


class DataTypeEntry(BaseModel):
    """One entry of ``data_types.yaml`` as written: unknown keys and wrong types are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str
    validator: dict[str, Any]
    asset: str | None = None
    release: str | None = None
    description: str | None = None
    exemplars: str | None = None
    variables: dict[str, Any] = {}
    world: str | None = None
    params: dict[str, Any] = {}
    n_personas: int = Field(3, ge=1)
    modes: tuple[Mode, ...] = MODES
    on_truncation: Literal["reject", "trim"] = "reject"  # an answer cut off by max_tokens

    @model_validator(mode="after")
    def _few_shot_needs_exemplars(self) -> DataTypeEntry:
        if any(m != "zero_shot" for m in self.modes) and not self.exemplars:
            raise ValueError("the few-shot modes need 'exemplars'")
        return self


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
    def from_entry(cls, name: str, entry: dict[str, Any], source: Path, node: Any = None) -> DataType:
        """A data type from its registry entry; ``node`` (the entry's YAML node) gives errors a line."""
        try:
            e = DataTypeEntry.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(x) for x in err["loc"]]
            where = f"{source}:{_line(node, loc)}" if node is not None else str(source)
            key = f", key {'.'.join(loc)!r}" if loc else ""
            message = err["msg"].removeprefix("Value error, ")
            raise RegistryError(f"{where}: data type {name!r}{key}: {message}") from None
        data_type = cls(
            name=name,
            asset=e.asset or f"{name}s",
            release=e.release or name,
            description=e.description or name.replace("_", " "),
            template=e.template,
            exemplars=e.exemplars,
            validator_spec=dict(e.validator),
            variables=dict(e.variables),
            world=e.world,
            params=dict(e.params),
            n_personas=e.n_personas,
            modes=e.modes,
            on_truncation=e.on_truncation,
            base_dir=str(source.parent),
        )
        try:
            data_type.validator()  # a bad validator spec fails when the registry loads, not mid-run
        except ValueError as exc:
            where = f"{source}:{_line(node, ['validator'])}" if node is not None else str(source)
            raise RegistryError(f"{where}: data type {name!r}, key 'validator': {exc}") from None
        return data_type


def _line(node: Any, loc: list[str]) -> int:
    """The 1-based line of the deepest YAML node along ``loc`` (a key, then list indexes)."""
    line = node.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            key, node = found[0]
            line = key.start_mark.line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line
        else:
            break
    return line + 1


def load_data_types(prompts_dir: str | None = None) -> dict[str, DataType]:
    """The bundled registry, updated with ``<prompts_dir>/../data_types.yaml`` when there is one."""
    files = [bundled_assets_dir() / REGISTRY]
    if prompts_dir and (user := Path(prompts_dir).parent / REGISTRY).is_file():
        files.append(user)
    types: dict[str, DataType] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            entries, root = yaml.safe_load(text) or {}, yaml.compose(text)
        except yaml.YAMLError as exc:
            raise RegistryError(f"{path}: not YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(entries, dict):
            raise RegistryError(f"{path}: expected a mapping of data type names to entries")
        nodes = {k.value: v for k, v in root.value} if isinstance(root, yaml.MappingNode) else {}
        for name, entry in entries.items():
            types[name] = DataType.from_entry(name, entry or {}, path, nodes.get(name))
    assets = [t.asset for t in types.values()]
    if dupes := sorted({a for a in assets if assets.count(a) > 1}):
        raise RegistryError(f"data types share asset names {dupes}")
    return types
