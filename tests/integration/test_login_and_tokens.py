"""WeChat login, binding, refresh rotation, logout and admin sign-in, through the running system."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from lvbao.registry import SERVICES
from shared import clock
from shared.service_app import public_prefix

pytestmark = pytest.mark.integration


def test_wechat_login_issues_a_token_that_works_on_every_service(pilot, api):
    pair = pilot.wechat_login("o-alice", "Alice")
    assert pair["token_type"] == "Bearer"
    assert pair["user"]["bound"] is False
    assert pair["user"]["roles"] == ["employee"]
    for service in SERVICES:
        response = api.get(f"{public_prefix(service)}/whoami", token=pair["access_token"])
        assert response.status_code == 200, (service, response.text)
        assert response.json()["service"] == service
        assert response.json()["subject"] == f"user:{pair['user']['id']}"


def test_same_wechat_user_logs_in_as_the_same_user(pilot):
    first = pilot.wechat_login("o-same")
    second = pilot.wechat_login("o-same")
    assert first["user"]["id"] == second["user"]["id"]


def test_code_used_twice_is_refused(pilot, api):
    code = api.post("/mock-wechat/mock/login", json={"openid": "o-twice"}).json()["code"]
    assert api.post("/api/auth/wechat/login", json={"code": code}).status_code == 200
    again = api.post("/api/auth/wechat/login", json={"code": code})
    assert again.status_code == 401
    assert again.json()["code"] == "wechat_code_invalid"


@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (40029, 401, "wechat_code_invalid"),
        (40163, 401, "wechat_code_invalid"),
        (40226, 403, "wechat_user_blocked"),
        (45011, 429, "wechat_rate_limited"),
        (-1, 503, "wechat_unavailable"),
    ],
)
def test_wechat_errcodes_map_to_the_contract(pilot, api, errcode, status, code):
    login_code = api.post("/mock-wechat/mock/login", json={"openid": "o-fault"}).json()["code"]
    api.post("/mock-wechat/mock/faults", json={"jscode2session": errcode})
    response = api.post("/api/auth/wechat/login", json={"code": login_code})
    body = response.json()
    assert (response.status_code, body["code"], body["status"]) == (status, code, status)
    assert body["message"] and body["request_id"] == response.headers["X-Request-Id"]
    if status == 429:
        assert response.headers["Retry-After"] == "60"


def test_wechat_unreachable_is_503(pilot, api):
    login_code = api.post("/mock-wechat/mock/login", json={"openid": "o-down"}).json()["code"]
    api.post("/mock-wechat/mock/faults", json={"jscode2session": "unreachable"})
    response = api.post("/api/auth/wechat/login", json={"code": login_code})
    assert response.status_code == 503
    assert response.json()["code"] == "wechat_unavailable"


def test_session_key_never_leaves_the_server(pilot, api, caplog, monkeypatch):
    from services.gateway.wechat import WeChatClient

    caplog.set_level(logging.DEBUG)
    seen = []
    original = WeChatClient._call

    def spy(self, method, path, **kwargs):
        body = original(self, method, path, **kwargs)
        seen.append(body)
        return body

    monkeypatch.setattr(WeChatClient, "_call", spy)
    pair = pilot.wechat_login("o-secretive")
    me = api.get("/api/auth/me", token=pair["access_token"])
    session_keys = [body["session_key"] for body in seen if "session_key" in body]
    assert len(session_keys) == 1  # WeChat did hand one to the gateway
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records  # the request was logged at all
    for text in (json.dumps(pair), me.text, logged):
        assert session_keys[0] not in text
        assert "session_key" not in text

def test_bind_by_phone_then_refresh_carries_the_binding(pilot, api):
    pair = pilot.wechat_login("o-bob")
    unbound = api.get("/api/points/whoami", token=pair["access_token"]).json()
    assert unbound["bound"] is False and unbound["institution_id"] is None

    bound = pilot.bind_by_phone(pair["access_token"], "13800000001")
    assert bound.status_code == 200, bound.text
    user = bound.json()
    assert user["bound"] is True
    assert user["institution_id"] == pilot.institution_id
    assert user["employee_no"] == "E1002"

    fresh = api.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    claims = api.get("/api/points/whoami", token=fresh["access_token"]).json()
    assert claims["bound"] is True and claims["institution_id"] == pilot.institution_id


def test_bind_errors(pilot, api):
    pair = pilot.wechat_login("o-carol")
    not_on_roster = pilot.bind_by_phone(pair["access_token"], "13999999999")
    assert not_on_roster.status_code == 404 and not_on_roster.json()["code"] == "roster_entry_not_found"
    both = api.post("/api/auth/bind", json={"phone_code": "x", "invite_code": "ABCD"}, token=pair["access_token"])
    assert both.status_code == 422 and "_schema" in both.json()["errors"]
    bad_invite = api.post("/api/auth/bind", json={"invite_code": "NOPE2345"}, token=pair["access_token"])
    assert bad_invite.status_code == 422 and bad_invite.json()["code"] == "invite_code_invalid"

    assert pilot.bind_by_phone(pair["access_token"], "13800000003").status_code == 200
    again = pilot.bind_by_phone(pair["access_token"], "13800000004")
    assert again.status_code == 409 and again.json()["code"] == "already_bound"

    other = pilot.wechat_login("o-dave")
    taken = pilot.bind_by_phone(other["access_token"], "13800000003")
    assert taken.status_code == 409 and taken.json()["code"] == "roster_entry_taken"


def test_bind_by_invite_code_once(pilot, api, province_token):
    invite = api.post(
        f"/api/auth/institutions/{pilot.institution_id}/invites", json={"employee_no": "E1010"}, token=province_token
    )
    assert invite.status_code == 201, invite.text
    code = invite.json()["invite_code"]
    erin = pilot.wechat_login("o-erin")
    bound = api.post("/api/auth/bind", json={"invite_code": code.lower()}, token=erin["access_token"])
    assert bound.status_code == 200 and bound.json()["employee_no"] == "E1010"
    frank = pilot.wechat_login("o-frank")
    reused = api.post("/api/auth/bind", json={"invite_code": code}, token=frank["access_token"])
    assert reused.status_code == 422 and reused.json()["code"] == "invite_code_invalid"


def test_phone_binding_fetches_the_wechat_access_token_once(pilot, api):
    before = api.get("/mock-wechat/mock/stats").json()["token_fetches"]
    for i, phone in enumerate(["13800000005", "13800000006", "13800000007"]):
        pair = pilot.wechat_login(f"o-cache-{i}")
        assert pilot.bind_by_phone(pair["access_token"], phone).status_code == 200
    assert api.get("/mock-wechat/mock/stats").json()["token_fetches"] - before == 1


def test_refresh_rotates_and_reuse_revokes_the_family(pilot, api):
    first = pilot.wechat_login("o-rotate")
    second = api.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    third = api.post("/api/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert third.status_code == 200

    reused = api.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and reused.json()["code"] == "refresh_token_reused"
    # The whole family is gone: even the newest token no longer refreshes.
    newest = api.post("/api/auth/refresh", json={"refresh_token": third.json()["refresh_token"]})
    assert newest.status_code == 401 and newest.json()["code"] == "invalid_refresh_token"


def test_logout_revokes_the_refresh_token(pilot, api):
    pair = pilot.wechat_login("o-leaving")
    out = api.post("/api/auth/logout", json={"refresh_token": pair["refresh_token"]}, token=pair["access_token"])
    assert out.status_code == 204
    after = api.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401


def test_admin_login(pilot, api):
    pair = pilot.admin_login("admin", "province-admin-pw-1")
    assert pair["user"]["roles"] == ["province_admin"]
    wrong = api.post("/api/auth/admin/login", json={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"
    unknown = api.post("/api/auth/admin/login", json={"username": "ghost", "password": "nope"})
    assert unknown.status_code == 401 and unknown.json()["code"] == "invalid_credentials"


def test_admin_login_locks_after_repeated_failures(pilot, api):
    for _ in range(10):
        api.post("/api/auth/admin/login", json={"username": "admin", "password": "wrong"})
    locked = api.post("/api/auth/admin/login", json={"username": "admin", "password": "province-admin-pw-1"})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0


def test_bind_with_a_used_phone_code_is_422(pilot, api):
    pair = pilot.wechat_login("o-phone-reuse")
    phone_code = api.post("/mock-wechat/mock/phone-code", json={"phone": "13800000011"}).json()["code"]
    other = pilot.wechat_login("o-phone-other")
    first = api.post("/api/auth/bind", json={"phone_code": phone_code}, token=other["access_token"])
    assert first.status_code == 200
    again = api.post("/api/auth/bind", json={"phone_code": phone_code}, token=pair["access_token"])
    assert again.status_code == 422 and again.json()["code"] == "phone_code_invalid"


def test_a_stale_wechat_access_token_is_refetched_once(pilot, api, settings, frozen_clock):
    first = pilot.wechat_login("o-stale-1")
    assert pilot.bind_by_phone(first["access_token"], "13800000012").status_code == 200
    # Someone else fetches a new token (WeChat then keeps the old one for 5 minutes only).
    api.get("/mock-wechat/cgi-bin/token", params={"grant_type": "client_credential", "appid": settings.wechat_appid,
                                                   "secret": settings.wechat_secret})
    frozen_clock.set(clock.now() + timedelta(minutes=6))
    fetches = api.get("/mock-wechat/mock/stats").json()["token_fetches"]
    second = pilot.wechat_login("o-stale-2")
    assert pilot.bind_by_phone(second["access_token"], "13800000013").status_code == 200
    assert api.get("/mock-wechat/mock/stats").json()["token_fetches"] == fetches + 1


def test_wechat_unreachable_for_phone_numbers_is_503(settings, redis_client):
    from services.gateway.wechat import WeChatClient
    from shared.errors import ApiError

    client = WeChatClient(settings.with_overrides(wechat_base_url="http://127.0.0.1:1", wechat_timeout_seconds=0.5),
                          redis_client)
    with pytest.raises(ApiError) as caught:
        client.phone_number("any-code")
    assert (caught.value.status, caught.value.code) == (503, "wechat_unavailable")
