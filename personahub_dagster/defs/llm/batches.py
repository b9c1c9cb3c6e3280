"""Completing LLM stages that waited on provider batches longer than their run did.

In batch mode a stage submits its requests and waits up to ``batch_max_wait_s`` (the ``llm``
resource). Past that the run ends — a run, and its ``llm`` pool slot, are not held for the provider's
24 h window — with the batch ids recorded in the lake. ``llm_batch_sensor`` looks at those records
every few minutes; when every batch of one has ended at the provider, it requests a run of that asset
and everything downstream of it for the same partition. That run finds the record, collects the
answers into the response cache, and goes on as an online run would; nothing is submitted twice.

Why a sensor and not a waiting run or a second asset: the wait belongs to the provider, not to any
step; a sensor costs one status call per batch per tick, and the asset keeps one shape (the same
code completes a stage online, in batch mode, or after a crash). Stopped by default, like the other
automation: turn it on with batch mode.
"""

import json

import dagster as dg

from personahub_dagster.core.llm.batch.provider import ProviderBatches
from personahub_dagster.core.llm.batch.run import STATE_FOLDER, TERMINAL
from personahub_dagster.defs.jobs import pipeline_job
from personahub_dagster.defs.resources import LakeResource, LLMResource


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-run an LLM asset (and what follows it) when its provider batches have ended.",
)
def llm_batch_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, llm: LLMResource):
    store = lake.lake().files.child(STATE_FOLDER)
    names = store.list()
    if not names:
        return dg.SkipReason("no batches waiting")
    graph = context.repository_def.asset_graph
    api = ProviderBatches(llm.batch_endpoint(), llm.api_key)
    requests = _finished(store, names, api, graph)
    return requests or dg.SkipReason(f"{len(names)} batch records, none finished yet")


def _finished(store, names: list[str], api: ProviderBatches, graph) -> list[dg.RunRequest]:
    """A run request for each record whose batches have all ended."""
    requests = []
    for name in names:
        record = json.loads(store.get(name))
        target = (record.get("context") or {}).get("asset")
        if not target:
            continue
        active = [b["id"] for b in record["batches"] if b["status"] not in TERMINAL]
        if any(api.retrieve(batch_id)["status"] not in TERMINAL for batch_id in active):
            continue
        key = dg.AssetKey.from_user_string(target)
        selection = dg.AssetSelection.assets(key).downstream().resolve(graph)
        requests.append(
            dg.RunRequest(
                run_key=f"{name}:{','.join(b['id'] for b in record['batches'])}",
                partition_key=record["context"].get("partition_key") or None,
                asset_selection=sorted(selection, key=lambda k: k.to_user_string()),
                tags={"trigger": "llm_batches"},
            )
        )
    return requests
