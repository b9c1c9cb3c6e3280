"""What a provider's rate-limit headers say: ``x-ratelimit-remaining-*`` counts and ``-reset-*``
durations (``1m30s``, ``250ms``, ``6.5s``), as OpenAI and the servers that copy it write them."""

from __future__ import annotations

import re


def header_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")


def reset_seconds(value: str | None) -> float | None:
    """OpenAI's reset times (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain seconds, in seconds."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = list(_DURATION.finditer(value))
    if not parts or "".join(p.group(0) for p in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(p["n"]) * scale[p["unit"]] for p in parts)
