"""Pickup codes: what an employee shows at the counter to collect a confirmed redemption.

``P.<redemption id base36>.<16 chars of base64url HMAC-SHA256>``, signed over the redemption id and a random
nonce kept with the redemption, with a key derived from the deployment's master secret
(``LVBAO_OPERATOR_KEY_SECRET``, domain-separated so no operator secret and no pickup key can be computed from
the other). A guessed or altered code fails the signature check; the key means a copy of the database alone
cannot forge one; single use is the redemption's status (``confirmed`` -> ``fulfilled`` under a row lock).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from shared.qr import base36

PREFIX = "P"
MAC_LENGTH = 16
MAX_LENGTH = 32
CODE = re.compile(rf"{PREFIX}\.([0-9a-z]{{1,7}})\.([A-Za-z0-9_-]{{{MAC_LENGTH}}})")
_DOMAIN = b"lvbao/rewards/pickup-codes/v1"


class PickupCodeInvalid(Exception):
    """Not a pickup code of ours: garbled, or its signature does not match."""


def new_nonce() -> str:
    return secrets.token_hex(16)


def _key(master_secret: str) -> bytes:
    return hmac.new(master_secret.encode(), _DOMAIN, hashlib.sha256).digest()


def _mac(master_secret: str, redemption_id: int, nonce: str) -> str:
    digest = hmac.new(_key(master_secret), f"{redemption_id}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:MAC_LENGTH]


def code_for(master_secret: str, redemption_id: int, nonce: str) -> str:
    return f"{PREFIX}.{base36(redemption_id)}.{_mac(master_secret, redemption_id, nonce)}"


def redemption_id_of(text: str) -> int:
    """The redemption a code names (not yet checked: see :func:`verify`)."""
    match = CODE.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_LENGTH else None
    if match is None:
        raise PickupCodeInvalid("not a pickup code")
    redemption_id = int(match.group(1), 36)
    if not 0 < redemption_id < 2**31:
        raise PickupCodeInvalid("not a pickup code")
    return redemption_id


def verify(master_secret: str, text: str, nonce: str | None) -> None:
    """PickupCodeInvalid unless ``text`` is the code of the redemption that holds ``nonce``."""
    redemption_id = redemption_id_of(text)
    if nonce is None or not hmac.compare_digest(text, code_for(master_secret, redemption_id, nonce)):
        raise PickupCodeInvalid("signature mismatch")
