"""The activities service's app factory."""

from __future__ import annotations

from flask import Flask

from services.activities.parts import ActivitiesParts
from services.activities.views import actions_blp, reviews_blp, stations_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None,
               parts: ActivitiesParts | None = None) -> Flask:
    parts = parts or ActivitiesParts(load_settings(config), db=db)
    return create_service_app(parts, [actions_blp, stations_blp, reviews_blp])
