"""The activities service's tables (its features arrive with their issues)."""

from __future__ import annotations

from services.activities.config import SCHEMA
from shared.db import make_base
from shared.infra_models import make_infra_models

Base = make_base(SCHEMA)
infra = make_infra_models(Base)
