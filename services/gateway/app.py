"""The gateway's app factory."""

from __future__ import annotations

from flask import Flask

from services.gateway.parts import GatewayParts
from services.gateway.views import admin_blp, auth_blp
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app


def create_app(config: Settings | dict | None = None, *, db: Database | None = None,
               parts: GatewayParts | None = None) -> Flask:
    settings = parts.settings if parts is not None else load_settings(config)
    missing = settings.missing_secrets()
    if missing and not settings.testing:
        # Refuse to start half-configured rather than fail at the first login or operator registration.
        raise RuntimeError(f"the gateway needs {', '.join(missing)} (see README, Configuration)")
    parts = parts or GatewayParts(settings, db=db)
    return create_service_app(parts, [auth_blp, admin_blp])
