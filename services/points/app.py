"""The points service's app factory."""

from __future__ import annotations

from flask import Flask

from services.points.config import SCHEMA, SERVICE
from services.points.models import infra
from services.points.views import account_blp, boards_blp, reports_blp, rules_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None) -> Flask:
    settings = load_settings(config)
    return create_service_app(
        SERVICE,
        settings=settings,
        db=db or Database(settings.database_url, SCHEMA),
        models=infra,
        blueprints=[rules_blp, account_blp, boards_blp, reports_blp],
        description="Rule tables, the ledger, balances and leaderboards.",
    )
