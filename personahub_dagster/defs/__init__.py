"""The Dagster layer: thin wrappers that read config, call the core and write to the lake."""
