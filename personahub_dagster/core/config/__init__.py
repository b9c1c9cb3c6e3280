"""What every other package agrees on: the settings (one pydantic-settings model, :mod:`.settings`),
the secrets to keep out of every log and file (:mod:`.secrets`), content-hash ids (:mod:`.ids`) and
the names of day × shard partitions (:mod:`.shards`). Imports nothing of the core."""
