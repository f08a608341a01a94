"""The one way a request reaches its service's composition root (see shared.parts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app

if TYPE_CHECKING:
    from shared.parts import ServiceParts

EXTENSION = "lvbao"

P = TypeVar("P", bound="ServiceParts")


def install(app: Flask, parts: ServiceParts) -> None:
    app.extensions[EXTENSION] = parts


def parts_of(app: Any) -> ServiceParts | None:
    """A mounted app's parts (None for an app that is not a service, such as the mock WeChat)."""
    return getattr(app, "extensions", {}).get(EXTENSION)


def current_parts(kind: type[P] | None = None) -> P:
    """The serving app's parts, as the service's own type when named: ``current_parts(PointsParts).ledger``."""
    parts = current_app.extensions[EXTENSION]
    if kind is not None and not isinstance(parts, kind):
        raise RuntimeError(f"this app serves {parts.name}, not {kind.__name__}")
    return parts
