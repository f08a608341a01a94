"""The gateway's event handlers, one registry (it consumes none yet)."""

HANDLERS: dict = {}
