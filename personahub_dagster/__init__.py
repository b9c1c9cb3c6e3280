"""personahub-dagster: the Persona Hub method (persona-driven synthetic data) as a Dagster data lake."""

import os

# litellm fetches a model price map from the internet at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
