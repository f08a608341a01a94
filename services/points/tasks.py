"""RQ job entry points of the points service (JSON arguments, idempotent)."""

from services.points.config import SERVICE
from services.points.parts import PointsParts
from shared.parts import LazyParts, events_job

parts = LazyParts(PointsParts)
handle_events = events_job(SERVICE, parts)
