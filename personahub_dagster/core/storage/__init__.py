"""Where the lake's bytes live: a :class:`~.location.Location` (a folder or ``s3://bucket/prefix``
with the standard ``AWS_*`` settings), the :class:`~.store.Store` every non-Delta file goes through
(atomic writes, compare-and-swap, reads retried unless "not found"), and the one-line explanation of a
misconfigured object store (:mod:`.s3`). May import :mod:`~personahub_dagster.core.config`."""
