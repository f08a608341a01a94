"""Keyset pages, one convention for every list: ``{"items": [...], "next_cursor": ...}``, where the cursor is
opaque to clients and holds the id of the last item given (``{"after": id}``): the next page continues past it
in the list's own order (oldest or newest first)."""

from __future__ import annotations

import base64
import json
from typing import Any

from shared.errors import ApiError

CURSOR_KEY = "after"


def _bad_cursor() -> ApiError:
    return ApiError(422, "validation_error", "分页游标无效", errors={"cursor": ["游标无效"]})


def encode_cursor(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except ValueError as exc:
        raise _bad_cursor() from exc
    if not isinstance(value, dict):
        raise _bad_cursor()
    return value


def after_id(cursor: str | None) -> int | None:
    """The id a page continues after, or None for the first page; 422 for a cursor this API never gave."""
    value = (decode_cursor(cursor) or {}).get(CURSOR_KEY)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _bad_cursor()
    return value


def page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page of ``items`` (at most ``limit``, each with an ``id``): a cursor when there may be more."""
    full = len(items) == limit and bool(items)
    return {"items": items, "next_cursor": encode_cursor({CURSOR_KEY: items[-1]["id"]}) if full else None}
