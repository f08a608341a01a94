"""The ``lvbao`` command: run, migrate, workers, relay, keys, admin accounts, demo seed, OpenAPI."""
