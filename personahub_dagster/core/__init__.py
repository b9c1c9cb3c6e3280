"""The pure core: no Dagster imports; every function usable and testable on its own."""
