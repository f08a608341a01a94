"""Alembic environment of the activities service (run through `lvbao migrate`)."""

from services.activities.models import Base
from shared.migrations import run_env

run_env(Base.metadata)
