"""RQ job entry points of the activities service (JSON arguments, idempotent)."""

from services.activities.config import SCHEMA, SERVICE
from services.activities.handlers import HANDLERS
from services.activities.models import infra
from shared.consumer import events_job
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime(SCHEMA)
handle_events = events_job(SERVICE, runtime, infra, HANDLERS)
