"""The gateway's app factory."""

from __future__ import annotations

from flask import Flask

from services.gateway.admin_service import AdminService
from services.gateway.config import SCHEMA, SERVICE
from services.gateway.keys import KeyRing
from services.gateway.models import infra
from services.gateway.service import AuthService
from services.gateway.views import admin_blp, auth_blp
from services.gateway.wechat import WeChatClient
from shared.auth.tokens import StaticKeySource
from shared.config import Settings, load_settings
from shared.db import Database
from shared.service_app import create_service_app, make_redis


def create_app(config: Settings | dict | None = None, *, db: Database | None = None) -> Flask:
    settings = load_settings(config)
    missing = settings.missing_secrets()
    if missing and not settings.testing:
        # Refuse to start half-configured rather than fail at the first login or operator registration.
        raise RuntimeError(f"the gateway needs {', '.join(missing)} (see README, Configuration)")
    db = db or Database(settings.database_url, SCHEMA)
    redis_client = make_redis(settings)
    keys = KeyRing(db)
    return create_service_app(
        SERVICE,
        settings=settings,
        db=db,
        models=infra,
        blueprints=[auth_blp, admin_blp],
        description="Identity: WeChat login, roster binding, tokens, devices, administration.",
        # The gateway verifies with its own published keys, read from its database.
        key_source=StaticKeySource(keys.jwks),
        redis_client=redis_client,
        extra={
            "auth": AuthService(settings, db, redis_client, WeChatClient(settings, redis_client)),
            "admin": AdminService(settings, db, redis_client),
        },
    )
