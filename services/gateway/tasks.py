"""RQ job entry points of the gateway service (JSON arguments, idempotent)."""

from services.gateway.config import SERVICE
from services.gateway.parts import GatewayParts
from shared.parts import LazyParts, events_job

parts = LazyParts(GatewayParts)
handle_events = events_job(SERVICE, parts)
