"""RQ job entry points of the points service (JSON arguments, idempotent)."""

from services.points.config import SCHEMA, SERVICE
from services.points.handlers import AFTER_BATCH, HANDLERS
from services.points.models import infra
from shared.consumer import events_job
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime(SCHEMA)
handle_events = events_job(SERVICE, runtime, infra, HANDLERS, after_batch=AFTER_BATCH)
