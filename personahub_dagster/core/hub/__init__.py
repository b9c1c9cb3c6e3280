"""The persona hub: near-duplicates marked by MinHash (:mod:`.minhash`) then embeddings
(:mod:`.embedder`, :mod:`.ann`) against everything kept (:mod:`.index`, :mod:`.marks`), its state saved
in the lake chunk by chunk (:mod:`.state`, :mod:`.chunks`), grown a day at a time (:mod:`.growth`),
sharded on Ray (:mod:`.on_ray`, :mod:`.shards`), with a fixed-size sample for statistics
(:mod:`.sample`). May import :mod:`~personahub_dagster.core.config`,
:mod:`~personahub_dagster.core.storage` and :mod:`~personahub_dagster.core.lake`."""
