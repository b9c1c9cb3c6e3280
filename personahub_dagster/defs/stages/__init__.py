"""The pipeline's stages as assets: raw text, personas, synthesis. Each asset is a thin shell: read
config and upstream rows from the lake, call one core function, write its rows (and rejects) back
atomically, report metadata and checks."""
