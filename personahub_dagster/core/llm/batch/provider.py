"""The provider's file and batch endpoints, through litellm's ``create_file`` / ``create_batch`` /
``retrieve_batch`` / ``file_content``: one client for every provider litellm can batch with (OpenAI and
every server that implements ``/v1/files`` and ``/v1/batches``, Azure OpenAI, hosted vLLM, Mistral, xAI,
Vertex AI and Bedrock with their storage buckets configured as litellm documents), instead of an HTTP
client of our own. Whatever a provider answers with an error becomes one :class:`BatchError` whose
message names the call and carries no credential."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from personahub_dagster.core.config.secrets import redact, register
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.transports import OPENAI_API_BASE

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

# the providers litellm creates, retrieves and reads batches for (litellm.create_batch's own list)
BATCH_PROVIDERS = frozenset(
    {"openai", "azure", "hosted_vllm", "litellm_proxy", "mistral", "xai", "vertex_ai", "bedrock"}
)


class BatchError(RuntimeError):
    """A batch cannot be used: rejected by the provider, or an output file that cannot be read. Its
    message quotes the provider's answer, with every credential taken out (some echo the key)."""

    def __init__(self, message: str):
        super().__init__(redact(message))


@dataclass(frozen=True)
class BatchEndpoint:
    """Where a batch goes: litellm's provider, its base URL (None: the provider's own) and the model
    name the provider knows (what each request line names)."""

    provider: str
    api_base: str | None
    model: str


def batch_endpoint(config: LLMConfig) -> BatchEndpoint:
    """The batch endpoint of ``config``'s model, or a ValueError naming the setting to change."""
    import litellm

    try:
        name, provider, _, _ = litellm.get_llm_provider(model=config.model, api_base=config.api_base)
    except Exception:
        provider, name = None, config.model
    if provider not in BATCH_PROVIDERS:
        raise ValueError(
            f"batch mode needs a provider with a batch API; {config.model} has none here "
            "(set PERSONAHUB_API_BASE to a server with /v1/batches, or use mode online)"
        )
    base = config.api_base or (OPENAI_API_BASE if provider == "openai" else None)
    return BatchEndpoint(provider, base.rstrip("/") if base else None, name)


class ProviderBatches:
    """Upload, submit, poll and read batches at one endpoint (the four calls :class:`.run.BatchRun`
    makes). Answers come back as plain dicts, as the provider's JSON has them."""

    def __init__(self, endpoint: BatchEndpoint, api_key: str | None, timeout_s: float = 120.0):
        register(api_key)  # redacted from every error from here on
        self.endpoint = endpoint
        self._auth: dict[str, Any] = {
            "custom_llm_provider": endpoint.provider,
            "timeout": timeout_s,
            **({"api_base": endpoint.api_base} if endpoint.api_base else {}),
            **({"api_key": api_key} if api_key else {}),  # else the provider's own variable
        }

    def _call(self, what: str, fn_name: str, **kwargs: Any) -> Any:
        import litellm

        try:
            return getattr(litellm, fn_name)(**kwargs, **self._auth)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            said = f"HTTP {status}: " if status else f"{type(exc).__name__}: "
            raise BatchError(f"{what}: {said}{str(exc)[:300]}") from None

    def upload(self, data: bytes, name: str) -> str:
        file = (name, data, "application/jsonl")
        return self._call("upload of the batch input", "create_file", file=file, purpose="batch").id

    def create(self, input_file_id: str, window: str, metadata: dict[str, str]) -> dict:
        batch = self._call(
            f"batch of {input_file_id}",
            "create_batch",
            input_file_id=input_file_id,
            endpoint="/v1/chat/completions",
            completion_window=window,
            metadata=metadata,
        )
        return batch.model_dump()

    def retrieve(self, batch_id: str) -> dict:
        return self._call(f"batch {batch_id}", "retrieve_batch", batch_id=batch_id).model_dump()

    def content(self, file_id: str) -> bytes:
        return self._call(f"file {file_id}", "file_content", file_id=file_id).content
