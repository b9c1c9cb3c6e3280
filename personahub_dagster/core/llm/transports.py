"""How a chat request reaches a model: three transports behind one small interface.

litellm knows every provider — their URLs, keys, parameter quirks and prices — but pays for it on every
call: building its logging object, mapping parameters, validating and pricing the response. Measured
here (``benchmarks/llm_throughput.py``), that per-call work, not the network, caps a client on two cores
at about a quarter of what a provider with 128 slots can serve. So the gateway sends each request the
cheapest way that is still correct:

* :class:`OpenAIHTTPTransport` — one shared aiohttp session POSTing ``/chat/completions`` to an
  OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama's ``/v1``, proxies, OpenAI itself).
  litellm still resolves the provider, key and base URL, once per gateway, and supplies prices.
* :class:`LocalTransport` — the embedded llama.cpp model, called directly in a worker thread.
* :class:`LiteLLMTransport` — everything else (Anthropic, Bedrock, Vertex, …): ``litellm.acompletion``.

Each returns a :class:`Completion` or raises; errors carry ``status_code`` and the provider's headers
so that the gateway's retry policy treats them alike whichever way they came.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

from personahub_dagster.core.llm.local_models import (
    count_local_tokens,
    ensure_registered,
    generate_local,
    is_local_model,
    llama_response_format,
)

# Providers whose API *is* OpenAI's chat completions API, spoken over HTTP at a base URL.
OPENAI_COMPATIBLE = frozenset(
    {"openai", "hosted_vllm", "lm_studio", "openai_like", "custom_openai", "llamafile"}
)


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    headers: Any = None  # the provider's response headers, where the transport sees them (rate limits)


class ProviderHTTPError(Exception):
    """A non-2xx answer (or an unreadable 2xx body) from an OpenAI-compatible endpoint."""

    def __init__(self, status_code: int, message: str, headers: Any = None):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.litellm_response_headers = headers  # where the gateway looks for Retry-After


class Transport(Protocol):
    name: str
    local: bool  # the embedded model: one request at a time, nothing leaves the machine

    async def complete(
        self, messages: list[dict[str, str]], params: dict[str, Any], timeout_s: float
    ) -> Completion: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


class _ModelTransport:
    """What every transport knows from its litellm model string: whether the model is the embedded one,
    and how to count its tokens — llama.cpp's tokenizer for local models, litellm's (bundled, offline)
    tokenizers otherwise, ~4 characters a token when neither knows the model."""

    def __init__(self, model: str):
        self.model = model
        self.local = is_local_model(model)

    def count_tokens(self, text: str) -> int:
        if self.local:
            return count_local_tokens(self.model.split("/", 1)[1], text)
        import litellm

        try:
            return len(litellm.encode(model=self.model, text=text))  # token_counter encodes twice
        except Exception:
            return max(1, len(text) // 4)

    async def aclose(self) -> None:
        return None


class LiteLLMTransport(_ModelTransport):
    """Any provider litellm supports, through ``litellm.acompletion`` (its own retries off)."""

    name = "litellm"

    def __init__(self, model: str, api_base: str | None, api_key: str | None, price: Any):
        super().__init__(model)
        self.api_base, self.api_key, self.price = api_base, api_key, price

    async def complete(
        self, messages: list[dict[str, str]], params: dict[str, Any], timeout_s: float
    ) -> Completion:
        import litellm

        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, timeout=timeout_s, num_retries=0, max_retries=0, **params
        )
        # A sampling param the provider lacks (Anthropic has no seed) is dropped, not an error: the
        # cache key still holds it, and the stage's config stays provider-neutral.
        kwargs["drop_params"] = True
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        resp = await litellm.acompletion(**kwargs)
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        pt, ct = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        content, cost = choice.message.content or "", self.price(resp, pt, ct)
        return Completion(content, choice.finish_reason, pt, ct, cost, _headers(resp))


class LocalTransport(_ModelTransport):
    """The embedded llama.cpp model, without litellm's per-call work (it costs nothing to price).

    Generation runs on one worker thread of its own, never on the event loop's: a loop blocked for
    the seconds a generation takes could not fire the per-attempt timeout, commit answers already
    received or notice a cancellation. One thread, because the model serves one request at a time
    (a lock in :mod:`.local_models`) and keeps its llama.cpp context on the thread that loaded it."""

    name = "local"
    _executor: Any = None  # one per process, shared by every gateway on the local model

    def __init__(self, model: str):
        super().__init__(model)
        self.local_name = model.split("/", 1)[1]

    @classmethod
    def _thread(cls) -> Any:
        if cls._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            cls._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        return cls._executor

    async def complete(
        self, messages: list[dict[str, str]], params: dict[str, Any], timeout_s: float
    ) -> Completion:
        import asyncio
        import functools

        call = functools.partial(generate_local, self.local_name, messages, **params)
        out = await asyncio.get_running_loop().run_in_executor(self._thread(), call)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            choice["message"]["content"] or "",
            choice.get("finish_reason") or "stop",
            usage.get("prompt_tokens"),
            usage.get("completion_tokens"),
            0.0,
        )


class OpenAIHTTPTransport(_ModelTransport):
    """POST ``{api_base}/chat/completions`` over one keep-alive connection pool."""

    name = "openai-http"

    def __init__(
        self, model: str, model_name: str, api_base: str, api_key: str | None, concurrency: int, price: Any
    ):
        super().__init__(model)
        self.model_name = model_name
        self.url = api_base.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.concurrency = max(1, concurrency)
        self.price = price
        self._session: Any = None
        # llama-cpp-python's server refuses OpenAI's json_schema response_format (with a 500) but takes
        # the same schema as {"type": "json_object", "schema": …}: once refused, send it that way
        self._schema_as_object = False

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def complete(
        self, messages: list[dict[str, str]], params: dict[str, Any], timeout_s: float
    ) -> Completion:
        import aiohttp

        fmt = params.get("response_format")
        sent = (
            {**params, "response_format": llama_response_format(fmt)}
            if self._schema_as_object and fmt
            else params
        )
        body = json.dumps({"model": self.model_name, "messages": messages, **sent})
        try:
            async with self._client().post(
                self.url, data=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    if b"json_schema" in raw and fmt is not None and sent is params:
                        self._schema_as_object = True
                        return await self.complete(messages, params, timeout_s)
                    raise ProviderHTTPError(resp.status, _error_message(raw), resp.headers)
                headers = resp.headers
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # A 200 that is not a chat completion: a proxy's error page, a body cut short. Retryable.
            raise ProviderHTTPError(502, f"unreadable response: {type(exc).__name__}", headers) from None
        usage = data.get("usage") or {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Completion(content, choice.get("finish_reason"), pt, ct, self.price(None, pt, ct), headers)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _headers(resp: Any) -> dict[str, str] | None:
    """The provider's headers from a litellm response (litellm keeps them, some with an
    ``llm_provider-`` prefix, in ``_hidden_params``)."""
    found = (getattr(resp, "_hidden_params", None) or {}).get("additional_headers") or {}
    return {k.removeprefix("llm_provider-").lower(): str(v) for k, v in found.items()} or None


def _error_message(raw: bytes) -> str:
    try:
        err = json.loads(raw).get("error")
        return str(err.get("message") if isinstance(err, dict) else err)[:500]
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


class Pricer:
    """Dollar cost of a call from litellm's (bundled, offline) price table, looked up once per model;
    None when the model has no price (a self-hosted model), never a guess."""

    def __init__(self, model: str):
        self.model = model
        self._rates: tuple[float, float] | None = None
        try:
            import litellm

            info = litellm.get_model_info(model)
            rate_in, rate_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
            if rate_in is not None and rate_out is not None:
                self._rates = (float(rate_in), float(rate_out))
        except Exception:  # unknown model: no price
            self._rates = None

    def __call__(self, _resp: Any, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        if self._rates is None or prompt_tokens is None or completion_tokens is None:
            return None
        return prompt_tokens * self._rates[0] + completion_tokens * self._rates[1]


OPENAI_API_BASE = "https://api.openai.com/v1"


def choose_transport(
    model: str, api_base: str | None, api_key: str | None, concurrency: int, fast_path: bool | None
) -> Transport:
    """The cheapest correct transport for ``model``. ``fast_path`` None (auto) takes the direct HTTP
    path for OpenAI-compatible providers that have a base URL configured (self-hosted servers and
    proxies, where parameters pass through as they are); True also sends provider ``openai`` without
    one straight to api.openai.com; False always goes through litellm."""
    if is_local_model(model):
        if fast_path is not False:
            return LocalTransport(model)
        ensure_registered()  # litellm's custom-provider route to the same llama.cpp model
        return LiteLLMTransport(model, None, None, _free)
    if fast_path is False:
        return LiteLLMTransport(model, api_base, api_key, _litellm_cost)
    import litellm

    try:
        name, provider, dynamic_key, resolved_base = litellm.get_llm_provider(model=model, api_base=api_base)
    except Exception:
        return LiteLLMTransport(model, api_base, api_key, _litellm_cost)
    default_base = OPENAI_API_BASE if fast_path and provider == "openai" else None
    base = api_base or (resolved_base if provider != "openai" else None) or default_base
    if provider not in OPENAI_COMPATIBLE or not base:
        return LiteLLMTransport(model, api_base, api_key, _litellm_cost)
    key = api_key or dynamic_key or (os.environ.get("OPENAI_API_KEY") if provider == "openai" else None)
    return OpenAIHTTPTransport(model, name, base, key, concurrency, Pricer(model))


def _free(*_args: Any) -> float:
    return 0.0


def _litellm_cost(resp: Any, *_tokens: Any) -> float | None:
    import litellm

    try:
        return float(litellm.completion_cost(completion_response=resp))
    except Exception:  # unknown price: None, not a guess
        return None
