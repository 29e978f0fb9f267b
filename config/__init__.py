"""Settings: the base every layer reads (cdmetrics.toml, environment variables, defaults)."""
