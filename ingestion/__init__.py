"""The ingestion platform: the `ingest` CLI and the loading of registry, configs, state and lake metadata."""
