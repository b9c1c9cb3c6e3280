"""Resources: the lake, the LLM gateway, the embedder and the prompt folder, each a thin config shell
around a core object. Secrets arrive only through environment variables (``dg.EnvVar``), which the
Dagster UI shows by name, never by value."""

import os

import dagster as dg
from pydantic import Field

from personahub_dagster.core.batch import BatchPending
from personahub_dagster.core.data_types import DataType, load_data_types
from personahub_dagster.core.embedder import DEFAULT_EMBEDDER, Embedder
from personahub_dagster.core.lake import Lake
from personahub_dagster.core.llm import LLMConfig, LLMGateway
from personahub_dagster.core.local_models import DEFAULT_MODEL
from personahub_dagster.core.prompts import PromptTemplate, load_exemplars, load_prompt
from personahub_dagster.core.transports import OPENAI_API_BASE

DEFAULT_LAKE = "lake"
DEFAULT_INBOX = "inbox"


class LakeResource(dg.ConfigurableResource):
    """The lake (``PERSONAHUB_LAKE``: a folder, default ``./lake``, or ``s3://bucket/prefix`` with the
    standard ``AWS_*`` variables), the LLM response cache (``PERSONAHUB_CACHE``; default beside a local
    lake, under ``PERSONAHUB_CACHE_DIR`` for a remote one) and the inbox raw text arrives in
    (``PERSONAHUB_INBOX``, default ``./inbox``: one ``YYYY-MM-DD`` folder per daily partition)."""

    path: str = Field(
        default=DEFAULT_LAKE, description="Lake: a folder or s3://bucket/prefix (Delta tables)."
    )
    inbox: str = Field(default=DEFAULT_INBOX, description="Drop folder: inbox/YYYY-MM-DD/ per partition.")
    cache: str | None = Field(
        default=None, description="Response cache: a SQLite file or postgresql:// URL; null: the default."
    )

    def lake(self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None) -> Lake:
        """The lake; with a ``context``, every Delta commit names the run and the asset that made it."""
        info = {}
        if context is not None:
            info["dagster.run_id"] = context.run_id
            if isinstance(context, dg.AssetExecutionContext):
                info["dagster.asset"] = context.asset_key.to_user_string()
        return Lake(self.path, cache=self.cache, commit_info=info)


class LLMResource(dg.ConfigurableResource):
    """Any litellm model string. Keys: set the provider's own variable (``OPENAI_API_KEY`` …), which
    litellm reads itself, or ``PERSONAHUB_API_KEY``, passed here as an ``EnvVar``."""

    model: str = Field(default=DEFAULT_MODEL, description="litellm model string, e.g. openai/gpt-4o-mini")
    api_base: str | None = Field(default=None, description="Base URL for vLLM / Ollama / proxies.")
    api_key: str | None = Field(default=None, description="Set with dg.EnvVar; never logged.")
    concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    temperature: float = 0.7
    max_tokens: int = Field(default=256, ge=1)
    seed: int | None = 0
    max_run_tokens: int | None = Field(
        default=None, description="Stop sending requests once a run has used this many tokens."
    )
    max_run_cost_usd: float | None = Field(
        default=None, description="Stop sending requests once a run has spent this much (priced models)."
    )
    scrub_pii: bool | None = Field(
        default=None,
        description="Scrub e-mails, phones, cards, addresses, names before sending; null: on for remote.",
    )
    rpm: float | None = Field(default=None, gt=0, description="The key's requests per minute (null: none).")
    tpm: float | None = Field(
        default=None, gt=0, description="The key's tokens per minute, prompt + max_tokens (null: none)."
    )
    rate_share: float = Field(
        default=1.0, gt=0, le=1, description="This worker's share of rpm/tpm: 1/N for N workers on one key."
    )
    adaptive: bool = Field(default=True, description="AIMD: halve rate and concurrency on 429, grow back.")
    mode: str = Field(
        default="online",
        description="online, or batch: the provider's batch API (half price, answers within 24 h)",
    )
    batch_poll_s: float = Field(default=30.0, gt=0, description="Batch mode: seconds between status polls.")
    batch_max_wait_s: float | None = Field(
        default=1800.0,
        description="Batch mode: end the run after this wait (llm_batch_sensor re-runs it); null: wait.",
    )
    batch_on_error: str = Field(
        default="reject", description="Batch mode: a request answered with an error: reject | online"
    )

    def batch_api_base(self) -> str:
        """Where the batch API is: the configured base URL, else OpenAI's."""
        return self.api_base or OPENAI_API_BASE

    def gateway(
        self,
        lake: Lake,
        model: str | None = None,
        run_id: str | None = None,
        mode: str | None = None,
        context: dg.AssetExecutionContext | None = None,
    ) -> LLMGateway:
        """The gateway over the lake's cache; ``model`` swaps in another model with the same settings
        (the math agreement filter's independent solvers); ``run_id`` ties the budget to the run;
        ``mode`` overrides the resource's (an asset's ``llm_mode``); ``context`` names the asset and
        partition a batch record asks the sensor to re-run, and takes batch mode's progress lines."""
        config = LLMConfig(
            model=model or self.model,
            api_base=self.api_base,
            api_key=self.api_key,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            max_run_tokens=self.max_run_tokens,
            max_run_cost_usd=self.max_run_cost_usd,
            run_id=run_id,
            scrub_pii=self.scrub_pii,
            rpm=self.rpm,
            tpm=self.tpm,
            rate_share=self.rate_share,
            adaptive=self.adaptive,
            mode=mode or self.mode,
            batch_poll_s=self.batch_poll_s,
            batch_max_wait_s=self.batch_max_wait_s,
            batch_on_error=self.batch_on_error,
        )
        gateway = DagsterGateway(config, lake.response_cache(), lake.files)
        if context is not None:
            gateway.log = context.log.info
            gateway.batch_context = {
                "asset": context.asset_key.to_user_string(),
                "partition_key": str(context.partition_key) if context.has_partition_key else "",
            }
        return gateway


class LLMStageConfig(dg.Config):
    """What every LLM asset's config has: the mode, overriding the ``llm`` resource's for this asset."""

    llm_mode: str | None = Field(
        default=None, description="online | batch for this asset; null: the llm resource's mode"
    )


class DagsterGateway(LLMGateway):
    """The gateway, with batch mode's "still waiting" turned into a Dagster failure that is not retried:
    the run ends (freeing its run and pool slots) and ``llm_batch_sensor`` re-runs the asset when the
    provider says the batches are done."""

    def generate(self, requests, stage, progress=None):
        try:
            return super().generate(requests, stage, progress)
        except BatchPending as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"llm_batch_ids": dg.MetadataValue.json(exc.batch_ids)},
                allow_retries=False,
            ) from None


class EmbedderResource(dg.ConfigurableResource):
    """sentence-transformers model: the packaged all-MiniLM-L6-v2 by default, or any model path."""

    model: str = DEFAULT_EMBEDDER
    batch_size: int = Field(default=64, ge=1)
    backend: str = Field(
        default="torch", description="torch (exact) or onnx-int8 (~2x faster, mean cosine 0.99 to torch)"
    )

    def embedder(self) -> Embedder:
        return Embedder(self.model, self.batch_size, backend=self.backend)


class PromptsResource(dg.ConfigurableResource):
    """Where prompt templates come from: files in ``prompts_dir`` override the bundled ones by name."""

    prompts_dir: str | None = None

    def template(self, name: str) -> PromptTemplate:
        return load_prompt(name, self.prompts_dir)

    def exemplars(self, name: str) -> tuple[dict[str, str], ...]:
        return load_exemplars(name, self.prompts_dir)

    def data_type(self, name: str) -> DataType:
        return load_data_types(self.prompts_dir)[name]


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment, so the same code runs the demo and a real provider."""
    env = os.environ
    return {
        "lake": LakeResource(
            path=env.get("PERSONAHUB_LAKE", DEFAULT_LAKE),
            inbox=env.get("PERSONAHUB_INBOX", DEFAULT_INBOX),
            # by name: a postgresql:// URL may carry a password, and the UI shows an EnvVar's name only
            cache=dg.EnvVar("PERSONAHUB_CACHE") if env.get("PERSONAHUB_CACHE") else None,
        ),
        "llm": LLMResource(
            model=env.get("PERSONAHUB_MODEL", DEFAULT_MODEL),
            api_base=env.get("PERSONAHUB_API_BASE") or None,
            api_key=dg.EnvVar("PERSONAHUB_API_KEY") if env.get("PERSONAHUB_API_KEY") else None,
            concurrency=int(env.get("PERSONAHUB_CONCURRENCY", "8")),
            max_run_tokens=_optional(env.get("PERSONAHUB_MAX_RUN_TOKENS"), int),
            max_run_cost_usd=_optional(env.get("PERSONAHUB_MAX_RUN_COST_USD"), float),
            rpm=_optional(env.get("PERSONAHUB_RPM"), float),
            tpm=_optional(env.get("PERSONAHUB_TPM"), float),
            rate_share=float(env.get("PERSONAHUB_RATE_SHARE") or 1.0),
            mode=env.get("PERSONAHUB_LLM_MODE") or "online",
            batch_poll_s=float(env.get("PERSONAHUB_BATCH_POLL_S") or 30.0),
            batch_max_wait_s=_optional(env.get("PERSONAHUB_BATCH_MAX_WAIT_S") or "1800", float),
        ),
        "embedder": EmbedderResource(
            model=env.get("PERSONAHUB_EMBEDDER", DEFAULT_EMBEDDER),
            backend=env.get("PERSONAHUB_EMBEDDER_BACKEND", "torch"),
        ),
        "prompts": PromptsResource(prompts_dir=env.get("PERSONAHUB_PROMPTS_DIR") or None),
    }


def _optional(value: str | None, kind: type) -> object:
    return kind(value) if value else None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
