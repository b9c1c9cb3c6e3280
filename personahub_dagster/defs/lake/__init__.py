"""The lake's jobs: weekly maintenance and the lineage job."""
