"""Where a text came from and under what licence: what every row derived from it inherits.

A document's licence and URL come, first, from the document itself (a JSONL record's or a Parquet row's
``license``/``licence`` and ``source_url``/``url``), then from a sidecar beside its file
(``<file>.meta.json``: ``{"license": …, "source_url": …}`` — for a folder of ``.txt`` or ``.html``
pages), then from the per-source rules in config (a glob on the document's path or URI → a licence),
and else it is ``unknown``: never guessed. Licences are kept as SPDX-style ids, lower-cased
(``CC-BY-4.0`` → ``cc-by-4.0``), so that filters compare them exactly.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

UNKNOWN = "unknown"
SIDECAR = ".meta.json"
# Licences whose terms allow commercial use of derived data (attribution or share-alike may apply);
# ``--license commercial-safe`` in an export stands for these. NonCommercial (-nc) licences are not here.
COMMERCIAL_SAFE = frozenset(
    {
        "cc0-1.0",
        "cc-by-4.0",
        "cc-by-3.0",
        "cc-by-sa-4.0",
        "cc-by-sa-3.0",
        "odc-by-1.0",
        "pddl-1.0",
        "public-domain",
        "mit",
        "apache-2.0",
        "bsd-2-clause",
        "bsd-3-clause",
    }
)


def normalize(license_id: object) -> str | None:
    """``"CC BY 4.0 "`` → ``cc-by-4.0``; None for a missing or empty value."""
    if not isinstance(license_id, str) or not license_id.strip():
        return None
    return "-".join(license_id.strip().lower().split())


@dataclass(frozen=True)
class LicenseRules:
    """Per-source licences (``{"inbox/*/wiki*.jsonl": "cc-by-sa-4.0"}``) and the default for the rest."""

    by_source: Mapping[str, str] = field(default_factory=dict)
    default: str = UNKNOWN

    def license_of(self, source_uri: str, given: str | None = None) -> str:
        """The document's own licence, else the first rule whose glob matches its path (or the path's
        file name), else the default."""
        if (own := normalize(given)) is not None:
            return own
        path = source_uri.split("#", 1)[0]
        for pattern, license_id in self.by_source.items():
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(Path(path).name, pattern):
                return normalize(license_id) or UNKNOWN
        return normalize(self.default) or UNKNOWN


NO_RULES = LicenseRules()


def sidecar(path: Path) -> dict[str, str | None]:
    """The licence and URL a ``<file>.meta.json`` beside ``path`` gives its documents (empty when
    there is none). A sidecar that is not a JSON object is an error naming it: silently losing the
    licence of a folder would mislabel every row made from it."""
    meta = path.with_name(path.name + SIDECAR)
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta}: not a JSON object of license and source_url ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{meta}: not a JSON object of license and source_url")
    return {"license": record_license(data), "source_url": record_url(data)}


def record_license(record: Mapping[str, object]) -> str | None:
    return normalize(record.get("license") or record.get("licence"))


def record_url(record: Mapping[str, object]) -> str | None:
    url = record.get("source_url") or record.get("url")
    return url.strip() if isinstance(url, str) and url.strip() else None


def wanted_licenses(names: Iterable[str]) -> set[str]:
    """Licence ids asked for on a command line; ``commercial-safe`` expands to :data:`COMMERCIAL_SAFE`."""
    out: set[str] = set()
    for name in names:
        key = normalize(name) or ""
        out |= COMMERCIAL_SAFE if key == "commercial-safe" else {key}
    return out
