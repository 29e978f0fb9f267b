"""The warehouse: schema, engine, migrations, idempotent upserts, raw payloads and sync state."""
