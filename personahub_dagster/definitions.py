"""The one Definitions object: everything under ``personahub_dagster/defs``, autoloaded.

``workspace.yaml``, ``dagster dev -m personahub_dagster.definitions`` and ``dg`` all load this module.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
