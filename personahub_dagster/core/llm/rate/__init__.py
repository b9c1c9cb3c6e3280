"""Living within a provider's limits: the per-gateway :class:`~.pacer.Pacer` (RPM/TPM buckets, AIMD on
429s), concurrency from latency (:mod:`.latency`), the provider's rate-limit headers (:mod:`.headers`)
and the bucket every worker on a key shares (:mod:`.shared`, reached through the cache it is given).
Imports nothing outside this package."""
