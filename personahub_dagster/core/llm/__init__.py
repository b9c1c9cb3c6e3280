"""The LLM gateway: every call of the pipeline goes through :class:`~.gateway.LLMGateway`.

Owns the gateway's config (:mod:`.config`), what a stage asks and gets back (:mod:`.results`), the
retry loop and its classification (:mod:`.calls`, :mod:`.retry`), the run budget (:mod:`.budget`),
the rate limits (:mod:`.rate`), the transports to providers and the packaged local model
(:mod:`.transports`, :mod:`.local_models`), personal-data scrubbing (:mod:`.pii`), provider batch
APIs (:mod:`.batch`) and the response cache with its call journal and books (:mod:`.cache`).
May import :mod:`~personahub_dagster.core.config` and :mod:`~personahub_dagster.core.storage`."""
