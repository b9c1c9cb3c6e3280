"""Daily partitions: raw text arrives as one partition per day (``inbox/YYYY-MM-DD/``), and every
downstream asset is partitioned the same way, so a day's run reads that day's data and the hub grows
by one partition.

Set from the environment when the definitions load:

* ``PERSONAHUB_START_DATE`` — first partition (default 2026-01-01);
* ``PERSONAHUB_TIMEZONE`` — the partitions' and the nightly schedule's timezone (default UTC).

Today's partition exists already (``end_offset=1``), so a file dropped in today's folder can be run
by the inbox sensor at once; the nightly schedule runs the newest day that has input.
"""

import os

import dagster as dg

START_DATE = os.environ.get("PERSONAHUB_START_DATE", "2026-01-01")
TIMEZONE = os.environ.get("PERSONAHUB_TIMEZONE", "UTC")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone=TIMEZONE, end_offset=1)
