"""The activities service's configuration constants (settings come from shared.config)."""

SCHEMA = "activities"
SERVICE = "activities"
