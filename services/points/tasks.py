"""RQ job entry points of the points service (JSON arguments, idempotent)."""

from services.points.boards import apply_pending
from services.points.config import SCHEMA, SERVICE
from services.points.handlers import HANDLERS
from services.points.models import infra
from shared.consumer import events_job
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime(SCHEMA)
# After each batch its board updates go to Redis (see services.points.boards).
handle_events = events_job(SERVICE, runtime, infra, HANDLERS, after_batch=apply_pending)
