"""The activities service's app factory."""

from __future__ import annotations

from flask import Flask

from services.activities.actions import ActionService
from services.activities.config import SCHEMA, SERVICE
from services.activities.models import infra
from services.activities.reviews import ReviewService
from services.activities.stations import StationService
from services.activities.views import actions_blp, reviews_blp, stations_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None) -> Flask:
    settings = load_settings(config)
    db = db or Database(settings.database_url, SCHEMA)
    return create_service_app(
        SERVICE,
        settings=settings,
        db=db,
        models=infra,
        blueprints=[actions_blp, stations_blp, reviews_blp],
        description="Green actions: commutes, station scans, charging sessions, stations and reviews.",
        extra={
            "actions": ActionService(db, settings.operator_key_secret),
            "stations": StationService(db),
            "reviews": ReviewService(db),
        },
    )
