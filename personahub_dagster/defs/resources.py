"""Resources: the lake, the LLM gateway, the embedder and the prompt folder, each a thin config shell
around a core object. Secrets arrive only through environment variables (``dg.EnvVar``), which the
Dagster UI shows by name, never by value."""

import copy

import dagster as dg
from dagster_ray import Lifecycle, RayResource
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, create_model
from pydantic.fields import FieldInfo

from personahub_dagster.core.config.settings import LLMSettings, Settings, settings
from personahub_dagster.core.hub.embedder import DEFAULT_EMBEDDER, Embedder
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.batch.provider import BatchEndpoint, batch_endpoint
from personahub_dagster.core.llm.batch.run import BatchPending
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.stages.data_types import DataType, load_data_types
from personahub_dagster.core.stages.prompts import PromptTemplate, load_exemplars, load_prompt

BUDGET_TAG = "personahub/budget"  # runs tagged alike share one budget (the nightly schedule's shards)


class LakeResource(dg.ConfigurableResource):
    """The lake (``PERSONAHUB_LAKE``: a folder, default ``./lake``, or ``s3://bucket/prefix`` with the
    standard ``AWS_*`` variables), the LLM response cache (``PERSONAHUB_CACHE``; default beside a local
    lake, under ``PERSONAHUB_CACHE_DIR`` for a remote one) and the inbox raw text arrives in
    (``PERSONAHUB_INBOX``, default ``./inbox``: one ``YYYY-MM-DD`` folder per daily partition)."""

    path: str = Field(
        default=Settings.model_fields["lake"].default,
        description="Lake: a folder or s3://bucket/prefix (Delta tables).",
    )
    inbox: str = Field(
        default=Settings.model_fields["inbox"].default, description="Drop folder: inbox/YYYY-MM-DD/ per day."
    )
    cache: str | None = Field(
        default=None, description="Response cache: a SQLite file or postgresql:// URL; null: the default."
    )
    _opened: list[Lake] = PrivateAttr(default_factory=list)

    def lake(self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None) -> Lake:
        """The lake; with a ``context``, every Delta commit names the run and the asset that made it."""
        info = {}
        if context is not None:
            info["dagster.run_id"] = context.run_id
            if isinstance(context, dg.AssetExecutionContext):
                info["dagster.asset"] = context.asset_key.to_user_string()
        lake = Lake(self.path, cache=self.cache, commit_info=info)
        self._opened.append(lake)
        return lake

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """A step's lakes close their response caches (a Postgres connection each) when it ends."""
        while self._opened:
            self._opened.pop().close()


def _launchpad_fields(model: type[BaseModel]) -> dict[str, tuple[object, FieldInfo]]:
    """``model``'s fields as Dagster config fields: same names, defaults, bounds and descriptions; a
    secret becomes a plain string, set with ``dg.EnvVar`` (Dagster config has no secret type, and the
    UI shows an EnvVar by name only)."""
    fields = {}
    for name, info in model.model_fields.items():
        info = copy.copy(info)
        if info.annotation == SecretStr | None:
            info.annotation, info.repr = str | None, False
        fields[name] = (info.annotation, info)
    return fields


class _LLMResource(dg.ConfigurableResource):
    """Any litellm model string, and every knob of the gateway: the fields are
    :class:`~personahub_dagster.core.config.settings.LLMSettings`' own, so whatever the gateway can do
    the launchpad can set, with the same defaults and bounds. Keys: set the provider's own variable
    (``OPENAI_API_KEY`` …), which litellm reads itself, or ``PERSONAHUB_API_KEY``, passed here as an
    ``EnvVar``."""

    def batch_endpoint(self) -> BatchEndpoint:
        """Where this model's batches go (the sensor polls them there)."""
        return batch_endpoint(LLMConfig(model=self.model, api_base=self.api_base))

    def gateway(
        self,
        lake: Lake,
        context: dg.AssetExecutionContext | None = None,
        config: dg.Config | None = None,
        model: str | None = None,
    ) -> LLMGateway:
        """The gateway over the lake's cache, as an asset needs it: ``context`` ties the budget to the
        run, names the asset and partition a batch record asks the sensor to re-run and takes batch
        mode's progress lines; ``config`` is the asset's (its ``llm_mode``, when it has one, overrides
        the resource's mode); ``model`` swaps in another model with the same settings (the math
        agreement filter's independent solvers)."""
        knobs = {name: getattr(self, name) for name in LLMSettings.model_fields}
        knobs["model"] = model or self.model
        knobs["mode"] = getattr(config, "llm_mode", None) or self.mode
        knobs["run_id"] = context.run_id if context is not None else None
        tagged = context.run.tags.get(BUDGET_TAG) if context is not None else None
        knobs["budget_scope"] = tagged or knobs["budget_scope"]
        gateway = DagsterGateway(LLMConfig(**knobs), lake.response_cache(), lake.files)
        if context is not None:
            gateway.log = context.log.info
            gateway.batch_context = {
                "asset": context.asset_key.to_user_string(),
                "partition_key": str(context.partition_key) if context.has_partition_key else "",
            }
        return gateway


LLMResource = create_model(
    "LLMResource", __base__=_LLMResource, __module__=__name__, __doc__=_LLMResource.__doc__,
    **_launchpad_fields(LLMSettings),
)  # fmt: skip


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


class RayClusterResource(RayResource):
    """The Ray cluster ``persona_hub`` grows the hub on when its engine picks Ray (dagster-ray's
    resource: ``ray.init`` options, env vars and Dagster tags as it passes them). ``address``: a running
    cluster (``host:port``, or ``ray://host:10001`` through Ray Client), or null for a local one
    started on demand (``PERSONAHUB_RAY_ADDRESS``). Nothing happens at step start: the asset connects
    only when the hub is searched on Ray, so a run that grows the hub in one process never touches Ray."""

    address: str | None = Field(default=None, description="host:port or ray://host:10001; null: local")
    # plain defaults, not default factories: Dagster builds a run's resource from the config schema,
    # which carries defaults but not factories (a factory here left dagster-ray's connect-at-start)
    lifecycle: Lifecycle = Lifecycle(create=False, wait=False, connect=False, cleanup="never")
    ray_init_options: dict = Field(
        default={"ignore_reinit_error": True, "log_to_driver": False},
        description="More ray.init() arguments (runtime_env, …).",
    )

    @property
    def host(self) -> str:
        address = (self.address or "127.0.0.1").removeprefix("ray://")
        return address.rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        return "RayCluster"

    @property
    def ray_address(self) -> str | None:  # type: ignore[override]
        return self.address

    @property
    def created(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return True


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

    def templates_of(self, names) -> dict[str, PromptTemplate]:
        """The prompt template of each registry data type among ``names`` (a type made by its own stage,
        such as verifiable instructions, has none here)."""
        types = load_data_types(self.prompts_dir)
        return {n: self.template(types[n].template) for n in names if n in types}


def default_resources(current: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the settings (``PERSONAHUB_*``), so the same code runs the demo and a
    real provider. Values that may hold a secret go in as ``EnvVar``: the UI shows their names only."""
    s = current or settings()
    return {
        "lake": LakeResource(
            path=s.lake,
            inbox=s.inbox,
            # by name: a postgresql:// URL may carry a password, and the UI shows an EnvVar's name only
            cache=dg.EnvVar("PERSONAHUB_CACHE") if s.cache else None,
        ),
        "llm": LLMResource(
            **{name: getattr(s, name) for name in LLMSettings.model_fields if name != "api_key"},
            api_key=dg.EnvVar("PERSONAHUB_API_KEY") if s.api_key else None,
        ),
        "embedder": EmbedderResource(model=s.embedder, backend=s.embedder_backend),
        "prompts": PromptsResource(prompts_dir=s.prompts_dir),
        "ray_cluster": RayClusterResource(address=s.ray_address),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
