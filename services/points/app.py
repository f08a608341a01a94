"""The points service's app factory."""

from __future__ import annotations

from flask import Flask

from services.points.parts import PointsParts
from services.points.views import account_blp, boards_blp, reports_blp, rules_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None,
               parts: PointsParts | None = None) -> Flask:
    parts = parts or PointsParts(load_settings(config), db=db)
    return create_service_app(parts, [rules_blp, account_blp, boards_blp, reports_blp])
