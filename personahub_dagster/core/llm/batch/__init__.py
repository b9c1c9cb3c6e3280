"""Provider batch APIs: the provider's endpoints through litellm (:mod:`.provider`), a stage's
requests as resumable batches recorded in the lake (:mod:`.run`), and the gateway's batch mode that
ties them to the cache and the journal (:mod:`.mode`). May import the rest of
:mod:`~personahub_dagster.core.llm`, :mod:`~personahub_dagster.core.config` and
:mod:`~personahub_dagster.core.storage`."""
