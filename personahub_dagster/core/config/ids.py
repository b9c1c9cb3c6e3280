"""Content-hash identifiers.

Every entity in the lake is named by a hash of what it is made of, so re-running a stage on the same
inputs yields the same ids (idempotent writes, stable lineage) and the same entity can never get two
ids. The one-letter prefix tells a human (and `personahub lineage`) what kind of id it is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_HEX_CHARS = 20  # 80 bits: collision odds at 1e9 entities are ~4e-7

PREFIXES = {"text": "t", "persona": "p", "generation": "g", "pair": "pp", "turn": "ct"}


def digest(*parts: Any) -> str:
    """A hex SHA-256 of the parts, canonically JSON-encoded so that types and order both count."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def content_id(kind: str, *parts: Any) -> str:
    """An id such as ``p-3f2a…`` for a persona made of ``parts``."""
    return f"{PREFIXES[kind]}-{digest(kind, *parts)[:ID_HEX_CHARS]}"


def kind_of(entity_id: str) -> str | None:
    """The kind an id names (``text``, ``persona``, ``generation``), or None for a foreign string."""
    prefix, _, rest = entity_id.partition("-")
    for kind, p in PREFIXES.items():
        if prefix == p and len(rest) == ID_HEX_CHARS:
            return kind
    return None
