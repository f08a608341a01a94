"""Alembic environment of the rewards service (run through `lvbao migrate`)."""

from services.rewards.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
