"""The rewards service's app factory."""

from __future__ import annotations

from flask import Flask

from services.rewards.catalog import CatalogService
from services.rewards.config import SCHEMA, SERVICE
from services.rewards.models import infra
from services.rewards.redemptions import RedemptionService
from services.rewards.views import catalog_blp, redemptions_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def redemption_service(db: Database, settings: Settings) -> RedemptionService:
    return RedemptionService(db, settings.operator_key_secret, settings.pickup_days, settings.debit_retry_seconds)


def create_app(config: Settings | dict | None = None, *, db: Database | None = None) -> Flask:
    settings = load_settings(config)
    db = db or Database(settings.database_url, SCHEMA)
    return create_service_app(
        SERVICE,
        settings=settings,
        db=db,
        models=infra,
        blueprints=[catalog_blp, redemptions_blp],
        description="Catalog, stock, redemptions and pickup codes.",
        extra={"catalog": CatalogService(db), "redemptions": redemption_service(db, settings)},
    )
