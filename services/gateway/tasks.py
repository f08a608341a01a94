"""RQ job entry points of the gateway service (JSON arguments, idempotent)."""

from services.gateway.config import SCHEMA, SERVICE
from services.gateway.handlers import HANDLERS
from services.gateway.models import infra
from shared.consumer import events_job
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime(SCHEMA)
handle_events = events_job(SERVICE, runtime, infra, HANDLERS)
