"""One error shape for every status: ``{code, message, status, errors, request_id}``."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
import psycopg
from flask import Flask, g, jsonify
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("lvbao.errors")

# Stable machine word and Chinese message for each status when the code raising it says nothing more.
DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "请求格式有误"),
    401: ("unauthorized", "未登录或登录已失效"),
    403: ("forbidden", "无权执行此操作"),
    404: ("not_found", "请求的资源不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    406: ("not_acceptable", "无法提供所请求的格式"),
    409: ("conflict", "请求与当前状态冲突"),
    410: ("gone", "资源已失效"),
    413: ("payload_too_large", "请求内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型"),
    422: ("validation_error", "请求参数有误"),
    428: ("precondition_required", "缺少必要的请求头"),
    429: ("rate_limited", "请求过于频繁，请稍后再试"),
    500: ("internal_error", "服务器内部错误"),
    502: ("bad_gateway", "上游服务异常"),
    503: ("service_unavailable", "服务暂不可用，请稍后再试"),
}


class ApiError(Exception):
    """A failure the client should see: status, stable code, Chinese message, optional per-field errors."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        errors: dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        default_code, default_message = DEFAULT_ERRORS.get(status, (f"http_{status}", "请求失败"))
        self.status = status
        self.code = code or default_code
        self.message = message or default_message
        self.errors = errors
        self.headers = headers or {}
        # Fields an endpoint's contract adds to the error shape (e.g. the roster import's `imported`).
        self.extra = extra or {}
        super().__init__(f"{status} {self.code}")


class ErrorSchema(ma.Schema):
    """The error payload (documentation of what :func:`error_response` produces)."""

    code = ma.fields.String(required=True, metadata={"description": "stable machine word"})
    message = ma.fields.String(required=True, metadata={"description": "message for people, in Chinese"})
    status = ma.fields.Integer(required=True)
    errors = ma.fields.Dict(metadata={"description": "field -> list of messages"})
    request_id = ma.fields.String(allow_none=True)


def error_response(error: ApiError):
    payload: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "status": error.status,
        "request_id": g.get("request_id"),
    }
    if error.errors:
        payload["errors"] = error.errors
    for name, value in error.extra.items():
        payload.setdefault(name, value)
    response = jsonify(payload)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    """webargs nests errors by location ({"json": {"field": [...]}}); the contract wants field -> messages."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, value in messages.items():
        if location in {"json", "query", "querystring", "form", "headers", "files", "view_args", "path"}:
            if isinstance(value, dict):
                flat.update(value)
            else:
                flat["_schema"] = value
        else:
            flat[location] = value
    return flat


def from_http_exception(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = None
    if "errors" in data:
        errors = data["errors"]
    elif "messages" in data:
        errors = _flatten_webargs(data["messages"])
    code, message = DEFAULT_ERRORS.get(status, (f"http_{status}", "请求失败"))
    if status == 400 and errors and any("JSON" in str(v) for v in errors.values()):
        code, message = "invalid_json", "请求体不是有效的 JSON"
    headers = {}
    # Keep the headers werkzeug computed (Allow on 405, WWW-Authenticate, Retry-After).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            headers[name] = value
    headers.update(data.get("headers") or {})
    return ApiError(status, code, data.get("message") or message, errors, headers)


def database_unavailable(exc: OperationalError) -> bool:
    """Whether an OperationalError means "down or busy" (retry later) rather than a broken statement."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return isinstance(exc.orig, psycopg.OperationalError) or "database is locked" in text or "busy" in text


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, lambda exc: error_response(from_http_exception(exc)))

    def dependency_down(exc: Exception):
        if isinstance(exc, OperationalError) and not database_unavailable(exc):
            return unexpected(exc)  # a missing column or a bad statement is a bug, not an outage
        # A database or Redis that is down, locked or timing out: the client may retry later.
        log.warning("dependency unavailable", extra={"error_type": type(exc).__name__})
        return error_response(ApiError(503, headers={"Retry-After": "5"}))

    app.register_error_handler(RedisConnectionError, dependency_down)
    app.register_error_handler(RedisTimeoutError, dependency_down)
    app.register_error_handler(OperationalError, dependency_down)

    def unexpected(exc: Exception):
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return error_response(ApiError(500))

    app.register_error_handler(Exception, unexpected)
