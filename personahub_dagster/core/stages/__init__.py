"""The pipeline's stages, raw text to data: the inbox and ingest (:mod:`.inbox`, :mod:`.ingest`,
:mod:`.sanitize`), Text-to-Persona and Persona-to-Persona (:mod:`.personas`), persona-driven synthesis
of the data types (:mod:`.synthesis`, :mod:`.data_types`, :mod:`.validators`, :mod:`.math_check`), and
what they share: prompts (:mod:`.prompts`), parsing of answers (:mod:`.parsing`) and the LLM stage
seam (:mod:`.stage`). May import :mod:`~personahub_dagster.core.config`,
:mod:`~personahub_dagster.core.storage`, :mod:`~personahub_dagster.core.llm` and
:mod:`~personahub_dagster.core.lake`."""
