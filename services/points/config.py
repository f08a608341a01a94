"""The points service's configuration constants (settings come from shared.config)."""

SCHEMA = "points"
SERVICE = "points"
