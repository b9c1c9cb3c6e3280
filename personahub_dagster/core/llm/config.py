"""How the gateway reaches a model: :class:`LLMConfig`, the gateway's knobs
(:class:`~personahub_dagster.core.config.settings.LLMSettings`, defined once) plus the run it serves."""

from __future__ import annotations

from personahub_dagster.core.config.settings import LLMSettings


class LLMConfig(LLMSettings):
    """How to reach a model. ``model`` is any litellm model string; the default needs no network.
    Validated on construction (a concurrency of 0 or a mode of "sometimes" is refused, naming the
    field); ``api_key`` is held as a ``SecretStr`` — never in a repr, a log or metadata."""

    run_id: str | None = None  # whose journal rows (and budget); None: a fresh id per gateway

    @property
    def key(self) -> str | None:
        """The key itself, for the transport that sends it (and for nothing else)."""
        return self.api_key.get_secret_value() if self.api_key is not None else None
