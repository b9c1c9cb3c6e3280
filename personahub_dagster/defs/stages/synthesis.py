"""Synthesis assets: one per data type in the registry (``assets/data_types.yaml``), the math
agreement filter, and the exported datasets.

    persona_hub → math_problems ─→ math_checks ─┐
                → logical_reasoning_problems ───┤
                → instructions, knowledge_texts,├→ datasets
                  game_npcs, tools ─────────────┘

The assets are made from the registry inside :func:`synthesis` (a ``@dg.definitions`` function), so
the registry is read when the code location loads — not when this module is imported — and a data type
added there (a prompt file + an entry; see README) appears in the asset graph with no code. A broken
registry is then a code-location load error naming the file, key and line.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from personahub_dagster.core.config.settings import settings
from personahub_dagster.core.stages.attributes import with_attributes
from personahub_dagster.core.stages.data_types import MODES, DataType, load_data_types
from personahub_dagster.core.stages.math_check import Solver, check_problems
from personahub_dagster.core.stages.synthesis import (
    exemplar_personas,
    select_personas,
    select_to_mix,
    synthesize,
)
from personahub_dagster.defs.evaluation.assets import contamination_checks_asset
from personahub_dagster.defs.evaluation.checks import CheckThresholds
from personahub_dagster.defs.evaluation.fidelity import persona_fidelity_asset
from personahub_dagster.defs.hub.persona_hub import persona_hub
from personahub_dagster.defs.metadata import (
    counts_of,
    lineage_markdown,
    mix_metadata,
    progress_logger,
)
from personahub_dagster.defs.partitions import partition_of
from personahub_dagster.defs.resources import LakeResource, LLMResource, PromptsResource
from personahub_dagster.defs.stages.datasets import datasets_asset
from personahub_dagster.defs.stages.llm_stage import (
    LLMStageConfig,
    commit_stage,
    generation_checks,
    llm_asset,
    stage_metadata,
)
from personahub_dagster.defs.stages.personas import PersonaFilterConfig
from personahub_dagster.defs.stages.preferences import preference_pairs_asset


def registry() -> dict[str, DataType]:
    """The data types the code location serves: the bundled registry plus ``PERSONAHUB_PROMPTS_DIR``'s."""
    return load_data_types(settings().prompts_dir)


class SynthesisConfig(LLMStageConfig):
    """How many personas, which prompting modes, which constraints. Unset fields take the data type's
    defaults from the registry."""

    n_personas: int | None = Field(default=None, description="Personas per mode (registry default).")
    all_personas: bool = Field(default=False, description="Use every kept persona (ignores n_personas).")
    modes: list[str] | None = Field(default=None, description=f"Subset of {list(MODES)} (default: all).")
    partitions: list[str] | None = Field(
        default=None, description="Hub partitions to sample (default: the run's own day)."
    )
    seed: int = Field(default=0, description="Persona sampling seed.")
    target_mix: dict[str, dict[str, float]] = Field(
        default={},
        description="Target shares over the hub's columns (method, hop, locale) or persona attributes "
        '(domain, expertise_level, age_band, language, cluster_label…), e.g. {"domain": {"health": 0.2}}: '
        "personas are drawn so their mix meets it as far as the hub allows (empty: uniform).",
    )
    mix_max_weight: float = Field(
        default=50.0, gt=1, description="Target mix: no persona weighted past this many times the mean."
    )
    in_persona_language: bool = Field(
        default=False, description="Ask for each item in its persona's locale (the source text's language)."
    )
    focus: str | None = Field(default=None, description='Topic constraint, e.g. "geometry".')
    difficulty: str | None = Field(default=None, description='e.g. "Olympiad-level" (if the template has it)')
    variables: dict[str, str] = Field(default={}, description="Other template slots to set.")
    exemplar_perspective: str = Field(
        default="write", description="Text-to-Persona perspective that gives the exemplars their personas."
    )
    exemplar_filters: PersonaFilterConfig = PersonaFilterConfig()
    checks: CheckThresholds = CheckThresholds()


def _variables(config: SynthesisConfig) -> dict[str, str]:
    given = {"focus": config.focus, "difficulty": config.difficulty, **config.variables}
    return {k: v for k, v in given.items() if v is not None}


def synthesis_asset(data_type: DataType) -> dg.AssetsDefinition:
    """The asset that synthesizes ``data_type`` for sampled hub personas in each prompting mode."""

    @llm_asset(
        "generations",
        ["reject_rate", "not_empty", "lineage"],
        name=data_type.asset,
        deps=[persona_hub],
        group_name="synthesis",
        description=f"Persona-driven {data_type.description}s ({', '.join(data_type.modes)}).",
        metadata={"data_type": data_type.name, "release": data_type.release},
    )
    def _synthesize(
        context, config: SynthesisConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
    ) -> dg.MaterializeResult:
        lk, day = lake.lake(context), partition_of(context)
        dt = prompts.data_type(data_type.name)
        modes = config.modes or list(dt.modes)
        gateway = llm.gateway(lk, context, config)
        days = config.partitions or [day]
        try:
            hub = with_attributes(lk, lk.read("hub", partitions=days), config.target_mix, days)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc
        hub = hub.sort("persona_id")
        n = None if config.all_personas else (config.n_personas or dt.n_personas)
        seed = f"{config.seed}:{dt.name}"
        mix_meta = {}
        if config.target_mix:
            chosen, raking = select_to_mix(hub, n, config.target_mix, seed, max_weight=config.mix_max_weight)
            mix_meta = mix_metadata(raking)
            for s in raking.infeasible:
                context.log.warning(
                    f"target mix: {s.attribute} = {s.value} asked {s.target:.3f}, reached {s.reached:.3f} "
                    f"({s.reason})"
                )
        else:
            chosen = select_personas(hub, n, seed)

        exemplars, exemplar_rejects = {}, None
        if any(m != "zero_shot" for m in modes):
            plain = [{"output": ex["output"]} for ex in prompts.exemplars(dt.exemplars)]
            exemplars["few_shot"] = plain
        if "persona_few_shot" in modes:
            with_persona, exemplar_rejects = exemplar_personas(
                prompts.exemplars(dt.exemplars),
                gateway,
                prompts.template("text_to_persona"),
                perspective=config.exemplar_perspective,
                filters=config.exemplar_filters.filters(),
                partition=day,
                stage=f"{dt.asset}.exemplars",
            )
            if not with_persona:
                raise dg.Failure(
                    f"no exemplar of {dt.name} got a persona from Text-to-Persona; see rejects "
                    f"(stage {dt.asset}.exemplars), or give the exemplars a 'persona:' key"
                )
            exemplars["persona_few_shot"] = with_persona
            for ex in with_persona:
                context.log.info(f"exemplar persona: {ex['persona']}")

        out = synthesize(
            chosen,
            gateway,
            dt,
            prompts.template(dt.template),
            modes=modes,
            exemplars=exemplars,
            variables=_variables(config),
            partition=day,
            stage=dt.asset,
            progress=progress_logger(context, dt.asset),
            in_persona_language=config.in_persona_language,
        )
        rejects = out.rejects if exemplar_rejects is None else pl.concat([exemplar_rejects, out.rejects])
        commit_stage(context, lk, "generations", out, rejects)
        per_mode = dict(out.rows.group_by("prompting_mode").len().iter_rows()) if out.rows.height else {}
        requests = chosen.height * len(modes)
        return dg.MaterializeResult(
            metadata={
                **stage_metadata(lk, "generations", out, ["prompting_mode", "output"], rejects),
                "personas_used": chosen.height,
                **mix_meta,
                "modes": dg.MetadataValue.json(modes),
                "rows": out.rows.height,
                "rows_by_mode": dg.MetadataValue.json(per_mode),
                "rows_by_language": dg.MetadataValue.json(counts_of(out.rows, "language")),
                "yield": round(out.rows.height / requests, 4) if requests else 0.0,
                "exemplar_personas": len(exemplars.get("persona_few_shot", [])),
                "lineage_sample": lineage_markdown(lk, out.rows["row_id"].head(2).to_list(), [day, *days]),
            },
            check_results=generation_checks(lk, day, out, config.checks),
        )

    return _synthesize


class SolverConfig(dg.Config):
    name: str
    style: str = Field(description="A style of the math_solution template: step_by_step | direct | program")
    model: str | None = Field(default=None, description="litellm model string; default: the LLM resource's")


class MathChecksConfig(LLMStageConfig):
    solvers: list[SolverConfig] = Field(
        default=[
            {"name": "step_by_step", "style": "step_by_step"},
            {"name": "direct", "style": "direct"},
        ],
        description="Independent solvers: different models and/or prompting styles.",
    )
    min_agree: int = Field(default=2, ge=2, description="Agreeing answers to keep a problem.")
    template: str = "math_solution"


def math_checks_asset(math: DataType) -> dg.AssetsDefinition:
    """The agreement filter over ``math``'s problems."""

    @llm_asset("math_checks", deps=[math.asset], group_name="synthesis")
    def math_checks(
        context, config: MathChecksConfig, lake: LakeResource, llm: LLMResource, prompts: PromptsResource
    ) -> dg.MaterializeResult:
        """The agreement filter: each math problem solved by independent solvers; kept for a test set
        only when at least ``min_agree`` final answers are equivalent (math-verify)."""
        lk, day = lake.lake(context), partition_of(context)
        problems = lk.read("generations", "data_type = ?", [math.name], partitions=[day]).sort("row_id")
        solvers = [
            Solver(
                s.name,
                s.style,
                llm.gateway(lk, context, config, model=s.model),
            )
            for s in config.solvers
        ]
        out = check_problems(
            problems,
            solvers,
            prompts.template(config.template),
            min_agree=config.min_agree,
            partition=day,
            stage="math_checks",
            progress=progress_logger(context, "math_checks"),
        )
        commit_stage(context, lk, "math_checks", out)
        agreed = int(out.rows["agreement"].sum()) if out.rows.height else 0
        return dg.MaterializeResult(
            metadata={
                **stage_metadata(lk, "math_checks", out, ["row_id", "agreeing", "answer"]),
                "problems": out.rows.height,
                "agreed": agreed,
                "agreement_rate": round(agreed / out.rows.height, 4) if out.rows.height else 0.0,
                "solvers": dg.MetadataValue.json([s.model_dump() for s in config.solvers]),
            }
        )

    return math_checks


@dg.definitions
def synthesis() -> dg.Definitions:
    """One asset per registry entry, the math agreement filter (when the registry has math problems),
    the contamination check over all of them and the exports."""
    types = registry()
    made = [synthesis_asset(dt) for dt in types.values()]
    if "math_problem" in types:
        made.append(math_checks_asset(types["math_problem"]))
    synthesized = [dt.asset for dt in types.values()]
    made += [
        contamination_checks_asset(synthesized),
        persona_fidelity_asset(synthesized),
        preference_pairs_asset(synthesized),
        datasets_asset(types),
    ]
    return dg.Definitions(assets=made)
