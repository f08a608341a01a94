"""Alembic environment of the gateway service (run through `lvbao migrate`)."""

from services.gateway.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
