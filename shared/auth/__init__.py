"""Tokens and the checks every endpoint makes: who is calling, in which role, for which institution."""

from shared.auth.guards import ADMINS, Principal, current_principal, require_auth
from shared.auth.tokens import (
    ALGORITHM,
    InvalidToken,
    JwksKeySource,
    KeysUnavailable,
    SigningKey,
    StaticKeySource,
    TokenIssuer,
    TokenVerifier,
)

__all__ = [
    "ADMINS",
    "ALGORITHM",
    "InvalidToken",
    "JwksKeySource",
    "KeysUnavailable",
    "Principal",
    "SigningKey",
    "StaticKeySource",
    "TokenIssuer",
    "TokenVerifier",
    "current_principal",
    "require_auth",
]
