"""What every service's views share: the Idempotency-Key decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from flask_smorest import Blueprint

from shared.auth.guards import current_principal
from shared.current import current_parts
from shared.errors import ApiError, error_response
from shared.idempotency import HEADER, MAX_KEY_LENGTH, IdempotentWrite, StoredAnswer, request_fingerprint

HEADER_DOC = {
    "parameters": [
        {
            "in": "header",
            "name": HEADER,
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "description": "A unique key per intended write; retries send the same key and body.",
        }
    ],
    "responses": {"409": "CONFLICT"},
}

# Refusals about the key itself are not the request's answer: never kept for replay.
_KEY_ERRORS = ("idempotency_key_reused", "idempotency_key_in_use")


def _key() -> str:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required", "缺少 Idempotency-Key 请求头",
                       errors={HEADER: ["缺少必填字段"]})
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(400, "idempotency_key_invalid", "Idempotency-Key 过长",
                       errors={HEADER: [f"最多 {MAX_KEY_LENGTH} 个字符"]})
    return key


def _says_try_later(response: Response) -> bool:
    """A 429, a 408 or any answer with Retry-After is about now, not about the request: never replay it."""
    return response.status_code in (408, 429) or "Retry-After" in response.headers


def _replay(answer: StoredAnswer) -> Response:
    response = current_app.response_class(answer.body, status=answer.status, mimetype="application/json")
    response.headers.update(answer.headers)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent_write(schema: Any, status: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a write view honour ``Idempotency-Key`` (required; put it below ``require_auth``). The view calls its
    use case with ``idem`` (an :class:`IdempotentWrite` serialising with ``schema``) and returns what the use
    case returns: the resource, answered with ``status``, or the key's stored answer, replayed. A refusal below
    500 is kept for replay too."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key, principal = _key(), current_principal().subject
            parts = current_parts()
            fingerprint = request_fingerprint(principal, request.method, request.full_path, request.get_data())
            idem = IdempotentWrite(parts.models.idempotency, principal, key, fingerprint,
                                   lambda resource: current_app.json.dumps(schema.dump(resource)), status)
            try:
                result = view(*args, idem=idem, **kwargs)
            except ApiError as exc:
                response = error_response(exc)
                if response.status_code >= 500 or _says_try_later(response) or exc.code in _KEY_ERRORS:
                    return response
                try:
                    earlier = idem.record_refusal(parts.db, response.status_code, response.get_data(True))
                except ApiError as refused:
                    return error_response(refused)
                return response if earlier is None else _replay(earlier)
            if isinstance(result, StoredAnswer):
                return _replay(result)
            body = idem.body if idem.body is not None else current_app.json.dumps(schema.dump(result))
            return current_app.response_class(body, status=status, mimetype="application/json")

        return Blueprint.doc(**HEADER_DOC)(wrapper)

    return decorator
