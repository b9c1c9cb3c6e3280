"""The pure core: no Dagster imports; every function usable and testable on its own.

The packages follow the data's path, and each may import only the packages listed before it::

    config      settings, secrets, content ids, shard names          (imports nothing of the core)
    storage     where bytes live: a folder or an S3 prefix           config
    llm         the gateway every LLM call goes through              config, storage
    instructions  verifiable constraints with IFEval's / IFBench's   config
                semantics, their conflicts, witnesses, ground truth
    lake        Delta tables, the call journal's copy, lineage       config, storage, llm, instructions
    stages      raw text → personas → synthesized data               config, storage, llm, instructions, lake
    hub         the deduplicated persona hub (MinHash, embeddings)   config, storage, lake
    evaluation  diversity, contamination, hub statistics, report     everything above

``tests/core/test_layout.py`` holds the code to this: the import rules, no import circle between
modules, no module past ~300 lines. ``docs/architecture.md`` draws the same map.
"""
