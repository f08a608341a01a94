"""RQ job entry points of the rewards service (JSON arguments, idempotent)."""

from services.rewards.config import SERVICE
from services.rewards.parts import RewardsParts
from shared.parts import LazyParts, events_job

parts = LazyParts(RewardsParts)
handle_events = events_job(SERVICE, parts)
