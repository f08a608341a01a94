"""JWT issue and verify: Ed25519 keys with a ``kid``, a JWKS, one allowed algorithm, required claims.

The gateway signs; every service verifies with the gateway's published JWKS. Retiring a key removes it from
the JWKS, and a token signed with it stops verifying once a verifier's cache has refreshed.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from shared import clock

log = logging.getLogger("lvbao.auth")

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "typ"]
TOKEN_TYPES = ("access", "device")


class InvalidToken(Exception):
    """The token is not one we issued, or not any more (the reason is for logs, never for clients)."""


class KeysUnavailable(InvalidToken):
    """No signing keys could be loaded at all: the verifier cannot decide (503, not 401)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        kid = f"{clock.now():%Y%m%d}-{secrets.token_hex(4)}"
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        return cls(kid=kid, private_pem=pem, public_jwk=jwk)


class TokenIssuer:
    """Signs tokens with the gateway's current key."""

    def __init__(self, key: SigningKey, issuer: str, audience: str):
        self._key = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
        self.kid = key.kid
        self.issuer = issuer
        self.audience = audience

    def issue(self, subject: str, token_type: str, ttl: timedelta | int, **claims: Any) -> tuple[str, datetime]:
        if token_type not in TOKEN_TYPES:
            raise ValueError(f"unknown token type {token_type!r}")
        now = clock.now()
        expires = now + (ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl))
        payload = {
            **claims,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "typ": token_type,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": claims.get("jti") or uuid.uuid4().hex,
        }
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, expires


class KeySource(Protocol):
    def get(self, kid: str) -> jwt.PyJWK | None: ...


class StaticKeySource:
    """Keys from a callable returning a JWKS dict (the gateway reads its own keys this way)."""

    def __init__(self, load_jwks: Callable[[], dict[str, Any]]):
        self._load = load_jwks

    def get(self, kid: str) -> jwt.PyJWK | None:
        for jwk in self._load().get("keys", []):
            if jwk.get("kid") == kid and jwk.get("alg") == ALGORITHM:
                return jwt.PyJWK(jwk, algorithm=ALGORITHM)
        return None


class JwksKeySource:
    """The gateway's JWKS fetched over HTTP and cached.

    An unknown ``kid`` triggers a refetch (a freshly rotated key), at most once per ``min_refresh_seconds`` so
    that tokens with made-up kids cannot turn every request into a fetch.
    """

    def __init__(self, url: str, cache_seconds: int = 60, min_refresh_seconds: float = 5.0, timeout: float = 3.0,
                 fetch: Callable[[], dict[str, Any]] | None = None):
        self.url = url
        # ``fetch`` replaces the HTTP call where the gateway runs in the same process (the embedded run): a
        # server fetching its own JWKS over HTTP can starve itself when every worker is busy.
        self.fetch = fetch
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded = False  # a JWKS was fetched once (even an empty one): from then on, answers are 401s
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        if self.fetch is not None:
            document = self.fetch()
        else:
            response = requests.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            document = response.json()
        keys = {}
        for jwk in document.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("alg") != ALGORITHM or not isinstance(jwk.get("kid"), str):
                continue
            try:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=ALGORITHM)
            except jwt.PyJWTError as exc:
                log.warning("jwks entry skipped", extra={"kid": jwk["kid"], "error": str(exc)})
        self._keys = keys
        self._loaded = True
        self._fetched_at = clock.now().timestamp()

    def _stale(self, kid: str) -> bool:
        age = clock.now().timestamp() - self._fetched_at
        # A clock that went backwards (a test unfreezing time) counts as stale too.
        return age < 0 or age > self.cache_seconds or (kid not in self._keys and age > self.min_refresh_seconds)

    def get(self, kid: str) -> jwt.PyJWK | None:
        # Ages are read from the clock seam, so tests can let a cache expire without sleeping.
        if self._stale(kid):
            # One thread refetches; while it does, the others go on with a key they already know instead of
            # queueing behind it (a server fetching its own JWKS with every thread waiting could never answer).
            known = self._loaded and kid in self._keys
            if self._lock.acquire(blocking=not known):
                try:
                    if self._stale(kid):
                        self._refresh_or_keep()
                finally:
                    self._lock.release()
        if not self._loaded:
            raise KeysUnavailable("signing keys unavailable")
        return self._keys.get(kid)

    def _refresh_or_keep(self) -> None:
        try:
            self._refresh()
        except (requests.RequestException, ValueError, AttributeError, jwt.PyJWTError) as exc:
            log.warning("jwks fetch failed", extra={"url": self.url, "error": str(exc)})
            # Keep what we have; try again after the minimum interval, not on every request.
            self._fetched_at = clock.now().timestamp() - self.cache_seconds + self.min_refresh_seconds

    def invalidate(self) -> None:
        self._fetched_at = float("-inf")


class VerifiedTokens:
    """Tokens this process has verified in full (signature, algorithm, kid, issuer, audience, required claims),
    most recent last, at most ``size``. Only the very same token string can match, so nothing unverified ever
    passes; a hit still needs its key to be published, and its time claims and type are checked on every use.
    A screen or a mini-program sends the same access token for minutes: the signature check (most of the cost
    of authentication) is then done once per process and token."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            item = self._items.get(token)
            if item is not None:
                self._items.move_to_end(token)
            return item

    def put(self, token: str, kid: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._items[token] = (kid, claims)
            self._items.move_to_end(token)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class TokenVerifier:
    """Verifies a bearer token: one algorithm, known ``kid``, our issuer and audience, every required claim."""

    def __init__(self, keys: KeySource, issuer: str, audience: str, leeway_seconds: int = 10):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.verified = VerifiedTokens()

    def verify(self, token: str, allowed_types: tuple[str, ...] = TOKEN_TYPES) -> dict[str, Any]:
        hit = self.verified.get(token)
        known = hit is not None and self.keys.get(hit[0]) is not None
        claims = dict(hit[1]) if known else self._verify_signed(token)
        now = clock.now().timestamp()
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", claims["iat"])
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat, nbf)):
            raise InvalidToken("time claims must be numbers")
        if exp + self.leeway <= now:
            raise InvalidToken("expired")
        if iat - self.leeway > now or nbf - self.leeway > now:
            raise InvalidToken("not valid yet")
        if claims.get("typ") not in allowed_types:
            raise InvalidToken(f"token type {claims.get('typ')!r} not accepted here")
        return claims

    def _verify_signed(self, token: str) -> dict[str, Any]:
        """The signature and every claim but the time ones; remembered once it passed."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no kid")
        key = self.keys.get(kid)
        if key is None:
            raise InvalidToken(f"unknown kid {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                # Time claims are checked below against the product's clock seam, not the system clock.
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        self.verified.put(token, kid, dict(claims))
        return claims
