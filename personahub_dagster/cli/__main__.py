"""``python -m personahub_dagster.cli``: the same as the ``personahub`` command."""

import sys

from personahub_dagster.cli import main

sys.exit(main())
