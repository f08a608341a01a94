"""The rewards service's configuration constants (settings come from shared.config)."""

SCHEMA = "rewards"
SERVICE = "rewards"
