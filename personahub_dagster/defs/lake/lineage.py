"""Any row's lineage from the UI: the ``lineage`` job.

A user holding one generated problem's id (``g-…``), a persona's (``p-…``) or a source text's
(``t-…``) opens the job's launchpad, pastes the id into its config and launches: the run shows the
whole chain — row → persona → parent personas → source text — as markdown metadata on its output and
as one log line per step, the same chain ``personahub lineage ID`` prints. ``as_of`` reads the lake
as it was (a timestamp, or ``TABLE=VERSION,…`` from an asset's ``as_of`` metadata). The job reads the
lake and writes nothing.
"""

import dagster as dg
from pydantic import Field

from personahub_dagster.core.lake.time_travel import AsOf
from personahub_dagster.defs.metadata import steps_markdown
from personahub_dagster.defs.resources import LakeResource


class LineageConfig(dg.Config):
    id: str = Field(description="A generated row (g-…), persona (p-…) or source text (t-…) id.")
    as_of: str | None = Field(
        default=None, description="The lake as it was: a timestamp, or TABLE=VERSION,… (null: now)."
    )
    width: int = Field(default=400, ge=40, description="Characters of text shown per step.")


@dg.op(out=dg.Out(dg.Nothing))
def trace_lineage(context: dg.OpExecutionContext, config: LineageConfig, lake: LakeResource) -> dg.Output:
    """Walk the lake from ``config.id`` back to its source text."""
    try:
        as_of = AsOf.parse(config.as_of) if config.as_of else None
        steps = lake.lake().lineage(config.id.strip(), as_of)
    except (KeyError, ValueError) as exc:
        raise dg.Failure(description=f"lineage of {config.id!r}: {exc.args[0]}") from None
    for depth, step in enumerate(steps):
        detail = ", ".join(f"{k}={v}" for k, v in step.detail.items() if v is not None)
        context.log.info(f"{'  ' * depth}{step.kind} {step.id} ({detail}): {step.text[: config.width]}")
    return dg.Output(
        None,
        metadata={
            "lineage": dg.MetadataValue.md(steps_markdown(steps, config.width)),
            "steps": len(steps),
            "source_text_id": steps[-1].id,
        },
    )


@dg.job(tags={"personahub/reads_only": "true"})
def lineage():
    """Trace one id back to its source text: paste a g-/p-/t- id into the launchpad's config."""
    trace_lineage()
