"""Charging-operator credentials: a key id that names its institution and device, and a secret derived from
it with the deployment's operator master key, so any service can verify a signature without a shared table."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorKeyId:
    institution_id: int
    device_id: int
    value: str


def new_operator_key_id(institution_id: int, device_id: int) -> str:
    return f"op.{institution_id}.{device_id}.{secrets.token_hex(6)}"


KEY_ID = re.compile(r"op\.([0-9]{1,10})\.([0-9]{1,10})\.[0-9a-f]{1,32}")


def parse_operator_key_id(value: str) -> OperatorKeyId | None:
    match = KEY_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return OperatorKeyId(int(match.group(1)), int(match.group(2)), value)


def derive_operator_secret(master_key: str, key_id: str) -> str:
    if not master_key:
        raise RuntimeError("LVBAO_OPERATOR_KEY_SECRET is not set")
    return hmac.new(master_key.encode(), f"operator:{key_id}".encode(), hashlib.sha256).hexdigest()


def sign_request(secret: str, timestamp: str, raw_body: bytes) -> str:
    """The signature an operator sends: hex(hmac_sha256(secret, timestamp + "." + raw_body))."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
