"""The services this deployment is made of, and how to reach each one's parts by name."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from shared.config import Settings
from shared.db import Database
from shared.infra_models import InfraModels
from shared.parts import ServiceParts

SERVICES = ("gateway", "activities", "points", "rewards")


def module(service: str, part: str) -> ModuleType:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{service}.{part}")


def parts_class(service: str) -> type[ServiceParts]:
    """The service's composition root (``services/<name>/parts.py``)."""
    return getattr(module(service, "parts"), f"{service.title()}Parts")


def build(service: str, settings: Settings, **kwargs: Any) -> ServiceParts:
    return parts_class(service)(settings, **kwargs)


def schema(service: str) -> str:
    return module(service, "config").SCHEMA


def infra(service: str) -> InfraModels:
    return module(service, "models").infra


def database(service: str, settings: Settings) -> Database:
    return Database(settings.database_url, schema(service))


def create_app(service: str, settings: Settings, parts: ServiceParts | None = None):
    return module(service, "app").create_app(settings, parts=parts)
