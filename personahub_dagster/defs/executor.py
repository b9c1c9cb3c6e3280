"""How a run executes its steps: in one process, or one process per step.

``PERSONAHUB_EXECUTOR`` = ``in_process`` | ``multiprocess``; unset, it follows where the model runs:

* **the embedded llama.cpp model** (``local/…``, the laptop default): in one process. Every LLM step
  uses all the machine's cores and the ``llm`` pool lets one run at a time, so separate step processes
  buy nothing and cost a process start, a code load and a model load per step, plus the pool's
  polling for a free slot (up to 15 s a step). Measured on the demo day (``benchmarks/ui_path.py``,
  docs/performance.md): the UI's "Materialize all" in one process takes the CLI's time.
* **a model behind a server or a provider**: Dagster's default (one process per step, steps in
  parallel as the ``llm`` pool allows; ``execution: {config: {in_process: {}}}`` in a run's config
  still picks one process).
"""

import dagster as dg

from personahub_dagster.core.config.settings import settings
from personahub_dagster.core.llm.local_models import is_local_model

EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multi_or_in_process_executor}


def executor_name(env: dict[str, str] | None = None) -> str:
    current = settings(env)
    if current.executor:
        return current.executor
    return "in_process" if is_local_model(current.model) else "multiprocess"


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=EXECUTORS[executor_name()])
