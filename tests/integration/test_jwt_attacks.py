"""Forged, tampered and stale tokens are refused by every service; a freshly rotated key is accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lvbao.registry import SERVICES
from services.gateway.keys import KeyRing
from shared import clock
from shared.auth.tokens import SigningKey, TokenIssuer
from shared.errors import ApiError
from shared.service_app import public_prefix
from tests import factories

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(settings, **overrides):
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": "user:1", "typ": "access",
        "iat": now, "exp": now + 600, "uid": 1, "roles": ["province_admin"], "inst": None,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


@pytest.fixture
def current_key(databases) -> SigningKey:
    return KeyRing(databases["gateway"]).signing_key()


def _sign(key: SigningKey, claims: dict) -> str:
    private = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
    return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": key.kid})


def _assert_refused_everywhere(api, token: str) -> None:
    for service in SERVICES:
        response = api.get(f"{public_prefix(service)}/whoami", token=token)
        assert response.status_code == 401, (service, response.text)
        body = response.json()
        assert body["code"] in {"invalid_token", "unauthorized"} and body["status"] == 401


def test_a_genuine_token_is_accepted(api, settings, current_key):
    token = _sign(current_key, _claims(settings))
    for service in SERVICES:
        assert api.get(f"{public_prefix(service)}/whoami", token=token).status_code == 200


def test_alg_none(api, settings, current_key):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": current_key.kid}).encode())
    payload = _b64(json.dumps(_claims(settings)).encode())
    _assert_refused_everywhere(api, f"{header}.{payload}.")


def test_hs256_signed_with_the_public_key(api, settings, current_key):
    public_pem = (
        serialization.load_pem_private_key(current_key.private_pem.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": current_key.kid}).encode())
    payload = _b64(json.dumps(_claims(settings)).encode())
    for secret in (public_pem, json.dumps(current_key.public_jwk).encode(), current_key.public_jwk["x"].encode()):
        signature = _b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        _assert_refused_everywhere(api, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"iss": "xx-lvbao-gateway-xx"},  # merely contains the real issuer
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        {"exp": ...},
        {"iat": ...},
        {"sub": ...},
        {"typ": ...},
        {"aud": ...},
        {"iss": ...},
        {"typ": "refresh"},
        {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
    ],
    ids=["wrong-aud", "wrong-iss", "iss-contains-real", "expired", "no-exp", "no-iat", "no-sub", "no-typ",
         "no-aud", "no-iss", "refresh-typ", "issued-in-future"],
)
def test_bad_claims(api, settings, current_key, overrides):
    claims = _claims(settings, **overrides)
    if overrides.get("iss") == "xx-lvbao-gateway-xx":
        assert settings.jwt_issuer in claims["iss"]
    _assert_refused_everywhere(api, _sign(current_key, claims))


def test_unknown_kid(api, settings):
    stranger = SigningKey.generate()
    _assert_refused_everywhere(api, _sign(stranger, _claims(settings)))


def test_refresh_token_used_as_access_token(pilot, api):
    pair = pilot.wechat_login("o-refresh-as-access")
    _assert_refused_everywhere(api, pair["refresh_token"])


def test_one_flipped_payload_bit(api, settings, current_key):
    token = _sign(current_key, _claims(settings, roles=["employee"]))
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # One bit of the role name: "employee" -> "employed". Every other claim stays valid, so only the
    # signature can refuse this token.
    position = raw.index(b'"employee"') + len(b'"employe')
    raw[position] ^= 0x01
    forged = json.loads(bytes(raw))
    assert forged["roles"] == ["employed"] and forged["iss"] == settings.jwt_issuer
    _assert_refused_everywhere(api, f"{header}.{_b64(bytes(raw))}.{signature}")


def test_signature_from_another_ed25519_key_with_the_real_kid(api, settings, current_key):
    forged = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(settings), forged, algorithm="EdDSA", headers={"kid": current_key.kid})
    _assert_refused_everywhere(api, token)


def test_rotation_accepts_the_new_key_and_retiring_refuses_the_old(api, settings, databases, rotates_keys,
                                                                    frozen_clock):
    ring = KeyRing(databases["gateway"])
    old = ring.signing_key()
    old_token = _sign(old, _claims(settings))
    new = ring.rotate(lead_seconds=120)
    assert new.kid in {k["kid"] for k in api.get("/api/auth/jwks.json").json()["keys"]}
    assert ring.signing_key().kid == old.kid  # published, not signing yet

    # Past the lead time (longer than every verifier's JWKS cache) the new key signs and is accepted.
    frozen_clock.set(clock.now() + timedelta(seconds=121))
    assert ring.signing_key().kid == new.kid
    new_token = TokenIssuer(new, settings.jwt_issuer, settings.jwt_audience).issue(
        "user:1", "access", 600, uid=1, roles=["employee"]
    )[0]
    for service in SERVICES:
        assert api.get(f"{public_prefix(service)}/whoami", token=new_token).status_code == 200, service
        assert api.get(f"{public_prefix(service)}/whoami", token=old_token).status_code == 200, service

    ring.retire(old.kid)
    assert old.kid not in {k["kid"] for k in api.get("/api/auth/jwks.json").json()["keys"]}
    frozen_clock.set(clock.now() + timedelta(seconds=settings.jwks_cache_seconds + 1))
    _assert_refused_everywhere(api, old_token)
    for service in SERVICES:
        assert api.get(f"{public_prefix(service)}/whoami", token=new_token).status_code == 200, service


def test_a_key_rotated_without_lead_is_fetched_on_first_sight(api, settings, databases, rotates_keys, frozen_clock):
    ring = KeyRing(databases["gateway"])
    ring.signing_key()
    for service in SERVICES:  # every verifier has just fetched the JWKS
        api.get(f"{public_prefix(service)}/whoami", token="x.y.z")
    frozen_clock.set(clock.now() + timedelta(seconds=6))  # past the minimum refetch interval
    new = ring.rotate(lead_seconds=0)
    token = TokenIssuer(new, settings.jwt_issuer, settings.jwt_audience).issue(
        "user:1", "access", 600, uid=1, roles=["employee"]
    )[0]
    for service in SERVICES:
        assert api.get(f"{public_prefix(service)}/whoami", token=token).status_code == 200, service


def test_a_key_devices_still_rely_on_cannot_be_retired_until_they_get_new_tokens(
    api, pilot, province_token, databases, settings, rotates_keys
, frozen_clock):
    ring = KeyRing(databases["gateway"])
    old = ring.signing_key()
    device = factories.device(api, province_token, pilot.institution_id, kind="screen", name="大厅")
    ring.rotate(lead_seconds=0)
    with pytest.raises(ApiError) as caught:
        ring.retire(old.kid)
    assert caught.value.code == "key_in_use_by_devices" and caught.value.extra == {"devices": 1}

    fresh = api.post(f"/api/auth/devices/{device['id']}/token", token=province_token)
    assert fresh.status_code == 201, fresh.text
    ring.retire(old.kid)
    frozen_clock.set(clock.now() + timedelta(seconds=settings.jwks_cache_seconds + 1))
    _assert_refused_everywhere(api, device["token"])
    assert api.get("/api/points/whoami", token=fresh.json()["token"]).status_code == 200


def test_person_tokens_with_device_roles_and_device_tokens_with_person_roles_are_refused(api, settings,
                                                                                         current_key):
    _assert_refused_everywhere(api, _sign(current_key, _claims(settings, roles=["station"])))
    _assert_refused_everywhere(api, _sign(current_key, _claims(settings, typ="device", did=1,
                                                               roles=["screen", "province_admin"])))
