"""RQ job entry points of the rewards service (JSON arguments, idempotent)."""

from services.rewards.config import SCHEMA, SERVICE
from services.rewards.handlers import HANDLERS
from services.rewards.models import infra
from shared.consumer import events_job
from shared.runtime import ServiceRuntime

runtime = ServiceRuntime(SCHEMA)
handle_events = events_job(SERVICE, runtime, infra, HANDLERS)
