"""The lake: one Delta table per name (:mod:`.schemas`), written a stage's slice of a day at a time
(:mod:`.writes`), read through DuckDB (:mod:`.reads`, metered by :mod:`.metering`), as of any version
(:mod:`.time_travel`); the call journal's copy (:mod:`.journal`), lineage (:mod:`.lineage`),
maintenance and conversion of older lakes (:mod:`.maintenance`, :mod:`.migrate`), and dataset exports
(:mod:`.export`). :class:`~.tables.Lake` composes them. May import
:mod:`~personahub_dagster.core.config`, :mod:`~personahub_dagster.core.storage` and the response cache
of :mod:`~personahub_dagster.core.llm`."""
