"""The hub as an asset: ``persona_hub``."""
