"""The rewards service's app factory."""

from __future__ import annotations

from flask import Flask

from services.rewards.parts import RewardsParts
from services.rewards.views import catalog_blp, redemptions_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None,
               parts: RewardsParts | None = None) -> Flask:
    parts = parts or RewardsParts(load_settings(config), db=db)
    return create_service_app(parts, [catalog_blp, redemptions_blp])
