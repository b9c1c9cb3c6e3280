"""How the gateway reaches a model: :class:`LLMConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from personahub_dagster.core.config.settings import DEFAULT_MODEL


@dataclass(frozen=True)
class LLMConfig:
    """How to reach a model. ``model`` is any litellm model string; the default needs no network."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)  # a str is wrapped on construction
    concurrency: int = 8  # requests in flight (the local model: always 1)
    timeout_s: float = 120.0  # per attempt
    max_retries: int = 4  # retries of a transient failure, after the first attempt
    backoff_initial_s: float = 1.0  # doubles with each retry, plus up to 1 s of jitter …
    backoff_max_s: float = 30.0  # … up to this
    retry_after_max_s: float = 60.0  # the most of a provider's Retry-After that is honoured
    max_run_tokens: int | None = None  # the run's budget, summed over every stage and worker
    max_run_cost_usd: float | None = None
    run_id: str | None = None  # whose journal rows (and budget); None: a fresh id per gateway
    budget_scope: str | None = None  # runs that share one budget (a night's shards); None: the run's own
    scrub_pii: bool | None = None  # None: on for remote models, off for the local one
    fast_path: bool | None = None  # None: direct HTTP for OpenAI-compatible endpoints with an api_base
    rpm: float | None = None  # the key's requests per minute (None: no request budget)
    tpm: float | None = None  # the key's tokens per minute, prompt + max_tokens (None: no token budget)
    rate_share: float = 1.0  # this worker's share of rpm/tpm: 1/N when N workers use one key
    adaptive: bool = True  # AIMD: halve rate and concurrency on a 429 overrun, grow back like TCP
    # servers that queue instead of answering 429 (vLLM, llama.cpp server): concurrency from latency
    latency_adaptive: bool = False
    # rpm/tpm drawn from one bucket in the response cache's database by every worker on the key;
    # None: whenever rpm/tpm are set and rate_share is 1 (a static share < 1 keeps the static split)
    shared_rate: bool | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = 0
    # online: one request at a time; batch: the provider's batch API (half price, answers within its
    # window; core/batch.py), for OpenAI-compatible endpoints
    mode: str = "online"
    batch_poll_s: float = 30.0
    batch_max_wait_s: float | None = None  # past it: BatchPending, the record is kept for the next run
    batch_max_requests: int = 50_000
    batch_on_error: str = "reject"  # a request the batch answered with an error: reject | online

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # held as a SecretStr: never in a repr, a log or metadata
            object.__setattr__(self, "api_key", SecretStr(self.api_key) if self.api_key else None)

    @property
    def key(self) -> str | None:
        """The key itself, for the transport that sends it (and for nothing else)."""
        return self.api_key.get_secret_value() if self.api_key is not None else None
