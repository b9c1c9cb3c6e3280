"""LLM plumbing in Dagster: the pools that bound concurrent LLM steps, and the sensor that re-runs a
stage when its provider batches end."""
