"""The activities service's event handlers, one registry (none yet)."""

HANDLERS: dict = {}
