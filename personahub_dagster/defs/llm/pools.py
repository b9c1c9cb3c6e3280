"""Concurrency pools and the retry policy of the LLM assets.

* ``persona_hub`` — hub growth, one step at a time across every run of the deployment (limit 1):
  each growth reads the state the previous one saved. Outside Dagster (``personahub demo``, scripts)
  the lake's own lock does the same on one machine, and on object storage the state's
  compare-and-swap makes a racing run grow again.
* ``llm`` — every step that calls the model. Sized to what serves it: 1 for the embedded llama.cpp
  model (two llama.cpp processes on one machine's cores run slower together than one after the other),
  the number of replicas × their batch for a self-hosted server, the key's limits for a provider.

A pool's limit is the deployment's, not the code's: ``concurrency.pools.default_limit`` in
``dagster.yaml`` (1 in both files under ``deploy/``), and ``dagster instance concurrency set llm 16`` (or
the UI's Concurrency page) to raise one. LLM steps retry: a retry is cheap, every answer already
received is in the response cache.
"""

import dagster as dg

HUB_POOL = "persona_hub"
LLM_POOL = "llm"

LLM_RETRY = dg.RetryPolicy(
    max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
