"""What was made, measured before anyone trains on it: diversity bands (:mod:`.diversity`),
contamination against benchmarks (:mod:`.contamination`), hub statistics (:mod:`.hub_stats`) and the
HTML report (:mod:`.report`, :mod:`.plots`). May import every other package of the core."""
