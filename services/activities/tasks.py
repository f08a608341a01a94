"""RQ job entry points of the activities service (JSON arguments, idempotent)."""

from services.activities.config import SERVICE
from services.activities.parts import ActivitiesParts
from shared.parts import LazyParts, events_job

parts = LazyParts(ActivitiesParts)
handle_events = events_job(SERVICE, parts)
