"""The shared library's pieces on their own: config, clock, tokens, events, operator keys, logs, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests

from shared import clock
from shared.auth.operator import derive_operator_secret, parse_operator_key_id, sign_request
from shared.auth.tokens import InvalidToken, JwksKeySource, SigningKey, StaticKeySource, TokenIssuer, TokenVerifier
from shared.config import Settings, load_settings
from shared.errors import _flatten_webargs
from shared.events import EmployeeBound, Event
from shared.logs import JsonFormatter

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("frozen_clock")]  # every test ends unfrozen


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("LVBAO_DATABASE_URL", "postgresql+psycopg://db/x")
    monkeypatch.setenv("LVBAO_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("LVBAO_LOG_FORMAT", "text")
    monkeypatch.setenv("LVBAO_WECHAT_SECRET", "")
    settings = Settings.from_env(jwt_issuer="me")
    assert settings.database_url == "postgresql+psycopg://db/x"
    assert settings.access_token_ttl == 120 and settings.log_json is False and settings.jwt_issuer == "me"
    assert settings.wechat_secret == "" and not settings.is_sqlite
    assert load_settings(settings) is settings
    assert load_settings({"testing": True}).testing is True


def test_settings_reject_bad_values(monkeypatch):
    monkeypatch.setenv("LVBAO_ACCESS_TOKEN_TTL", "soon")
    with pytest.raises(ValueError, match="LVBAO_ACCESS_TOKEN_TTL"):
        Settings.from_env()
    monkeypatch.delenv("LVBAO_ACCESS_TOKEN_TTL")
    with pytest.raises(TypeError, match="unknown settings"):
        Settings.from_env(no_such_setting=1)


def test_secrets_stay_out_of_repr():
    settings = Settings(wechat_secret="s3cret-value", operator_key_secret="m4ster")
    assert "s3cret-value" not in repr(settings) and "m4ster" not in repr(settings)


def test_clock_freezes_advances_and_refuses_naive_times():
    moment = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    with clock.frozen_at(moment):
        assert clock.now() == moment
        assert clock.local_now().hour == 7  # Asia/Shanghai is UTC+8
        assert clock.advance(timedelta(minutes=45)) == moment + timedelta(minutes=45)
    assert clock.now() != moment
    with pytest.raises(RuntimeError):
        clock.advance(timedelta(seconds=1))
    with pytest.raises(ValueError):
        clock.set_time(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    assert clock.as_utc(datetime(2026, 1, 1)).tzinfo is UTC  # noqa: DTZ001


def _verifier(key: SigningKey, **kwargs) -> TokenVerifier:
    return TokenVerifier(StaticKeySource(lambda: {"keys": [key.public_jwk]}), "iss", "aud", **kwargs)


def test_tokens_round_trip_and_expire_by_the_clock_seam(frozen_clock):
    key = SigningKey.generate()
    issuer = TokenIssuer(key, "iss", "aud")
    frozen_clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    token, expires = issuer.issue("user:5", "access", 60, uid=5, roles=["employee"])
    claims = _verifier(key, leeway_seconds=0).verify(token)
    assert claims["sub"] == "user:5" and claims["typ"] == "access" and expires == clock.now() + timedelta(seconds=60)
    clock.advance(timedelta(seconds=61))
    with pytest.raises(InvalidToken, match="expired"):
        _verifier(key, leeway_seconds=0).verify(token)
    with pytest.raises(ValueError):
        issuer.issue("user:5", "refresh", 60)


def test_tokens_from_the_future_and_of_other_types_are_refused(frozen_clock):
    key = SigningKey.generate()
    issuer = TokenIssuer(key, "iss", "aud")
    frozen_clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    token, _ = issuer.issue("device:1", "device", 600, did=1, roles=["screen"])
    with pytest.raises(InvalidToken, match="type"):
        _verifier(key).verify(token, allowed_types=("access",))
    frozen_clock.set(datetime(2029, 12, 31, tzinfo=UTC))
    with pytest.raises(InvalidToken, match="not valid yet"):
        _verifier(key).verify(token)
    for junk in ("", "abc", "a.b.c"):
        with pytest.raises(InvalidToken):
            _verifier(key).verify(junk)


def test_a_token_verified_once_is_checked_again_for_time_type_and_its_key(frozen_clock):
    key = SigningKey.generate()
    published = {"keys": [key.public_jwk]}
    verifier = TokenVerifier(StaticKeySource(lambda: published), "iss", "aud", leeway_seconds=0)
    frozen_clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    token, _ = TokenIssuer(key, "iss", "aud").issue("user:5", "access", 60, uid=5, roles=["employee"])
    assert verifier.verify(token)["sub"] == "user:5"
    assert verifier.verified.get(token) is not None
    signature = token.rsplit(".", 1)[1]
    forged = token[: -len(signature)] + ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken):
        verifier.verify(forged)  # never a hit: only the very same string is remembered
    with pytest.raises(InvalidToken, match="type"):
        verifier.verify(token, allowed_types=("device",))
    clock.advance(timedelta(seconds=61))
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    clock.advance(timedelta(seconds=-61))
    published["keys"] = []  # the key is withdrawn: its tokens stop working at once
    with pytest.raises(InvalidToken, match="unknown kid"):
        verifier.verify(token)
    small = TokenVerifier(StaticKeySource(lambda: {"keys": [key.public_jwk]}), "iss", "aud")
    small.verified.size = 2
    tokens = [TokenIssuer(key, "iss", "aud").issue(f"user:{u}", "access", 60, uid=u, roles=["employee"])[0]
              for u in range(3)]
    for t in tokens:
        small.verify(t)
    assert small.verified.get(tokens[0]) is None and small.verified.get(tokens[2]) is not None


class _FakeHttp:
    """Stands in for the gateway's JWKS endpoint."""

    def __init__(self, jwks):
        self.jwks = jwks
        self.calls = 0
        self.down = False

    def __call__(self, url, timeout):
        self.calls += 1
        if self.down:
            raise requests.ConnectionError("gateway down")
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(self.jwks).encode()
        return response


def test_jwks_source_caches_refetches_and_survives_an_outage(monkeypatch, frozen_clock):
    key, other = SigningKey.generate(), SigningKey.generate()
    http = _FakeHttp({"keys": [key.public_jwk]})
    monkeypatch.setattr("shared.auth.tokens.requests.get", http)
    frozen_clock.set(datetime(2030, 1, 1, tzinfo=UTC))
    source = JwksKeySource("http://gateway/jwks.json", cache_seconds=60, min_refresh_seconds=5)
    assert source.get(key.kid) is not None and http.calls == 1
    assert source.get(key.kid) is not None and http.calls == 1  # cached
    assert source.get("made-up") is None and http.calls == 1  # too soon to refetch for an unknown kid
    clock.advance(timedelta(seconds=6))
    http.jwks = {"keys": [key.public_jwk, other.public_jwk]}
    assert source.get(other.kid) is not None and http.calls == 2  # a new kid: refetched
    http.down = True
    clock.advance(timedelta(seconds=61))
    assert source.get(key.kid) is not None and http.calls == 3  # outage: the known keys stay
    assert source.get(key.kid) is not None and http.calls == 3  # and it does not retry on every request
    empty = JwksKeySource("http://gateway/jwks.json")
    with pytest.raises(InvalidToken, match="unavailable"):
        empty.get(key.kid)


def test_events_travel_as_json():
    event = EmployeeBound(user_id=1, institution_id=2, department_id=None, employee_no="E1", nickname="一")
    message = json.loads(json.dumps(event.to_message()))
    assert Event.from_message(message) == event
    with pytest.raises(ValueError, match="unknown event type"):
        Event.from_message({**message, "type": "Nope"})


def test_operator_key_ids_and_signatures():
    assert parse_operator_key_id("op.3.17.abcdef").device_id == 17
    for bad in ("op.3.x.abc", "key.3.4.abc", "op.3.4", "", "op.\u00b2.4.abc", "op.3.4.abc\u00e9"):
        assert parse_operator_key_id(bad) is None
    with pytest.raises(RuntimeError):
        derive_operator_secret("", "op.1.2.abc")
    secret = derive_operator_secret("master", "op.1.2.abc")
    assert secret != derive_operator_secret("master", "op.1.3.abc")
    assert len(sign_request(secret, "1700000000", b'{"a":1}')) == 64


def test_json_logs_redact_secrets_by_name():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.session_key = "abc"
    record.password = "pw"
    record.errcode = 40029
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "hello world" and entry["errcode"] == 40029
    assert entry["session_key"] == "[redacted]" and entry["password"] == "[redacted]"


def test_webargs_errors_are_flattened_to_fields():
    assert _flatten_webargs({"json": {"code": ["x"]}, "query": {"limit": ["y"]}}) == {"code": ["x"], "limit": ["y"]}
    assert _flatten_webargs({"json": ["Invalid JSON body."]}) == {"_schema": ["Invalid JSON body."]}
    assert _flatten_webargs("boom") == {"_schema": ["boom"]}


def test_a_deployment_must_set_its_secrets():
    assert Settings(wechat_base_url="https://api.weixin.qq.com").missing_secrets() == [
        "LVBAO_OPERATOR_KEY_SECRET", "LVBAO_WECHAT_SECRET"]
    assert Settings(operator_key_secret="x").missing_secrets() == []  # the local mock WeChat needs no secret
    from services.gateway.app import create_app

    with pytest.raises(RuntimeError, match="LVBAO_OPERATOR_KEY_SECRET"):
        create_app(Settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0"))


def test_a_stale_jwks_is_refetched_by_one_thread_while_the_others_use_known_keys(monkeypatch):
    """Under load a server may fetch its own JWKS: threads that know the kid must not queue behind the fetch."""
    import threading

    key = SigningKey.generate()
    source = JwksKeySource("http://jwks.invalid/keys.json", cache_seconds=60)
    fetch_started, release_fetch, fetches = threading.Event(), threading.Event(), []

    def slow_fetch():
        fetches.append(1)
        if len(fetches) > 1:
            fetch_started.set()
            release_fetch.wait(5)
        source._keys = {key.kid: jwt.PyJWK(key.public_jwk, algorithm="EdDSA")}
        source._loaded = True
        source._fetched_at = clock.now().timestamp()

    monkeypatch.setattr(source, "_refresh", slow_fetch)
    with clock.frozen_at(datetime(2030, 1, 1, tzinfo=UTC)):
        assert source.get(key.kid) is not None
        clock.advance(timedelta(seconds=61))  # stale: the next call refetches (slowly)
        fetcher = threading.Thread(target=source.get, args=(key.kid,))
        fetcher.start()
        assert fetch_started.wait(5)
        assert source.get(key.kid) is not None  # answered at once from the known keys
        release_fetch.set()
        fetcher.join(5)
    assert len(fetches) == 2


def test_instants_outside_the_storable_years_are_validation_errors_not_crashes():
    import marshmallow as ma

    from shared.schemas import InputSchema, Instant

    class When(InputSchema):
        at = Instant(required=True)

    assert When().load({"at": "2026-12-02T08:00:00+08:00"})["at"].year == 2026
    for bad in ("0001-01-01T00:00:00+01:05", "1999-12-31T23:00:00+00:00", "9999-12-31T23:59:59-05:00"):
        with pytest.raises(ma.ValidationError) as raised:
            When().load({"at": bad})
        assert raised.value.messages == {"at": ["时间超出范围（2000 至 9998 年）"]}
