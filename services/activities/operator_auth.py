"""Charging operators sign each request: ``X-Lvbao-Key``, ``X-Lvbao-Timestamp`` (unix seconds) and
``X-Lvbao-Signature: hex(hmac_sha256(secret, timestamp + "." + raw_body))``. Requests outside a 5-minute window
are refused, and so is a signature seen before (see OperatorRequest)."""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass

from flask import request

from shared import clock
from shared.auth.guards import ensure_device_not_revoked
from shared.auth.operator import derive_operator_secret, parse_operator_key_id, sign_request
from shared.current import current_parts
from shared.errors import ApiError

log = logging.getLogger("lvbao.activities.operator")

MAX_SKEW_SECONDS = 300
# ASCII only: str.isdigit() also accepts digits of other scripts, which int() or compare_digest then refuse.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"[0-9a-f]{64}")
HEADERS_DOC = {
    "parameters": [
        {"in": "header", "name": "X-Lvbao-Key", "required": True, "schema": {"type": "string"}},
        {"in": "header", "name": "X-Lvbao-Timestamp", "required": True, "schema": {"type": "string"},
         "description": "unix seconds; refused more than 5 minutes away from the server's clock"},
        {"in": "header", "name": "X-Lvbao-Signature", "required": True, "schema": {"type": "string"},
         "description": 'hex(hmac_sha256(secret, timestamp + "." + raw_body))'},
    ],
    "responses": {"401": "UNAUTHORIZED", "409": "CONFLICT"},
}


@dataclass(frozen=True)
class OperatorCaller:
    institution_id: int
    device_id: int
    key_id: str
    signature: str


def _refuse(reason: str) -> ApiError:
    log.info("operator request refused", extra={"reason": reason})
    return ApiError(401, "invalid_signature", "请求签名无效", headers={"WWW-Authenticate": "Lvbao-HMAC"})


def authenticate_operator() -> OperatorCaller:
    ctx = current_parts()
    key_id = request.headers.get("X-Lvbao-Key", "")
    timestamp = request.headers.get("X-Lvbao-Timestamp", "")
    signature = request.headers.get("X-Lvbao-Signature", "").strip().lower()
    parsed = parse_operator_key_id(key_id) if len(key_id) <= 64 else None
    if parsed is None or not TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
        raise _refuse("malformed headers")
    if abs(clock.now().timestamp() - int(timestamp)) > MAX_SKEW_SECONDS:
        raise ApiError(401, "stale_timestamp", "请求时间戳超出 5 分钟有效期",
                       headers={"WWW-Authenticate": "Lvbao-HMAC"})
    expected = sign_request(derive_operator_secret(ctx.settings.operator_key_secret, key_id), timestamp,
                            request.get_data())
    if not hmac.compare_digest(expected, signature):
        raise _refuse("signature mismatch")
    ensure_device_not_revoked(parsed.device_id)
    return OperatorCaller(parsed.institution_id, parsed.device_id, key_id, signature)
