"""A day of green actions as the mini-program, a canteen station and a charging operator drive the running system
(`lvbao run`): log in, bind, commute 10 km by metro, scan the canteen's code in meal hours, a charging session
arrives; the balance and every ledger receipt equal the rule math."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests

from shared import clock
from shared.auth.operator import sign_request

pytestmark = pytest.mark.e2e


class Client:
    def __init__(self, base: str, token: str | None = None):
        self.base, self.token, self.http = base, token, requests.Session()

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs) -> dict:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (path, response.status_code, response.text)
        return response.json()


def expected_receipt(rule: dict, variant: str, quantity: str, earned_today: int = 0) -> tuple[int, int]:
    """The contract's award: carbon_g = round(quantity x factor); points = min(carbon_g // g_per_point, cap left)."""
    factor = rule["variants"][variant]["carbon_g_per_unit"]
    carbon = int((Decimal(quantity) * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    points = carbon // rule["g_per_point"]
    if rule["daily_cap_points"] is not None:
        points = min(points, rule["daily_cap_points"] - earned_today)
    return carbon, points


def window_around_now() -> dict[str, str]:
    now = clock.local_now()
    start = max(now - timedelta(hours=1), now.replace(hour=0, minute=0))
    end = now + timedelta(hours=1)
    return {"name": "午餐", "start": start.strftime("%H:%M"),
            "end": "24:00" if end.date() != now.date() else end.strftime("%H:%M")}


def test_a_day_of_green_actions_is_credited_by_the_rules(running_system):
    base = running_system["base"]
    anonymous = Client(base)

    # The employee: wx.login, sign-in, bind by phone, refreshed tokens carry the binding.
    code = anonymous.ok("POST", "/mock-wechat/mock/login", json={"openid": "o-green-day"})["code"]
    pair = anonymous.ok("POST", "/api/auth/wechat/login", json={"code": code})
    phone_code = anonymous.ok("POST", "/mock-wechat/mock/phone-code", json={"phone": "13800000000"})["code"]
    Client(base, pair["access_token"]).ok("POST", "/api/auth/bind", json={"phone_code": phone_code})
    pair = anonymous.ok("POST", "/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    me = Client(base, pair["access_token"])
    institution_id = pair["user"]["institution_id"]

    # The admin sets up a canteen station, its tablet and a charging operator.
    admin_pair = anonymous.ok("POST", "/api/auth/admin/login",
                              json={"username": "admin", "password": running_system["password"]})
    admin = Client(base, admin_pair["access_token"])
    station = admin.ok("POST", "/api/activities/stations", 201, json={
        "institution_id": institution_id, "name": "一楼食堂回收台", "kind": "canteen",
        "windows": [window_around_now()]})
    tablet = Client(base, admin.ok("POST", "/api/auth/devices", 201, json={
        "kind": "station", "institution_id": institution_id, "name": "食堂平板"})["token"])
    operator = admin.ok("POST", "/api/auth/devices", 201,
                        json={"kind": "operator", "institution_id": institution_id, "name": "充电运营商"})
    rules = {r["action_type"]: r for r in admin.ok(
        "GET", f"/api/points/rules?institution_id={institution_id}")["items"]}

    # 1. Commute 10 km by metro, an hour ago.
    occurred = (clock.local_now() - timedelta(hours=1)).replace(microsecond=0).isoformat()
    commute = me.ok("POST", "/api/activities/actions", 201, headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"type": "commute", "mode": "metro", "distance_km": 10, "occurred_at": occurred})
    assert commute["status"] == "accepted"

    # 2. Scan the canteen's current code (the tablet shows it; the phone reads it).
    shown = tablet.ok("GET", f"/api/activities/stations/{station['id']}/code")
    assert tablet.call("GET", f"/api/activities/stations/{station['id']}/code.png").content[:4] == b"\x89PNG"
    plate = me.ok("POST", "/api/activities/scans", 201, headers={"Idempotency-Key": uuid.uuid4().hex},
                  json={"code": shown["code"]})
    assert plate["type"] == "clean_plate" and plate["status"] == "accepted"

    # 3. The operator reports a charging session (server to server, HMAC-signed). Activities learns who
    #    employee E1001 is from the gateway's event, so the first tries may not know them yet.
    ended = datetime.now(clock.LOCAL_TZ).replace(microsecond=0) - timedelta(minutes=5)
    body = json.dumps({"session_id": f"S-{uuid.uuid4().hex[:8]}", "employee_no": "E1001", "charger_id": "C-1",
                       "kwh": 20.5, "started_at": (ended - timedelta(hours=2)).isoformat(),
                       "ended_at": ended.isoformat()}).encode()
    deadline = time.monotonic() + 30
    while True:
        stamp = str(int(time.time()))
        signature = sign_request(operator["secret"], stamp, body)
        charging = anonymous.call("POST", "/api/activities/charging-sessions", data=body, headers={
            "X-Lvbao-Key": operator["key_id"], "X-Lvbao-Timestamp": stamp, "X-Lvbao-Signature": signature,
            "Content-Type": "application/json"})
        if charging.status_code != 422 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert charging.status_code == 201, charging.text
    posted_at = time.monotonic()

    expected = {
        "commute": expected_receipt(rules["commute"], "metro", "10"),
        "clean_plate": expected_receipt(rules["clean_plate"], "default", "1"),
        "ev_charging": expected_receipt(rules["ev_charging"], "default", "20.5"),
    }
    balance = sum(points for _, points in expected.values())
    carbon = sum(grams for grams, _ in expected.values())
    summary = None
    while time.monotonic() - posted_at < 30:
        summary = me.ok("GET", "/api/points/me")
        if summary["balance"] == balance:
            break
        time.sleep(0.02)
    lag = time.monotonic() - posted_at
    print(f"{running_system['mode']}: charging session credited {lag:.2f} s after its 201")
    assert summary["balance"] == balance and summary["lifetime_points"] == balance
    assert summary["carbon_g"] == carbon and summary["today"]["carbon_g"] <= carbon

    ledger = me.ok("GET", "/api/points/me/ledger")["items"]
    by_action = {entry["source"]["id"]: entry for entry in ledger}
    for action, kind in ((commute, "commute"), (plate, "clean_plate"), (charging.json(), "ev_charging")):
        entry = by_action[str(action["id"])]
        grams, points = expected[kind]
        receipt = entry["receipt"]
        assert entry["kind"] == "award" and entry["source"]["type"] == "action"
        assert (entry["points"], entry["carbon_g"]) == (points, grams)
        assert receipt["rule_id"] == rules[kind]["id"] and receipt["rule_version"] == rules[kind]["version"]
        assert receipt["factor_g_per_unit"] * Decimal(receipt["quantity"]) == pytest.approx(grams, abs=1)
        assert (receipt["carbon_g"], receipt["points"]) == (grams, points)
    assert ledger[0]["balance_after"] == balance
    assert [a["id"] for a in me.ok("GET", "/api/activities/actions?mine")["items"]] == sorted(
        (commute["id"], plate["id"], charging.json()["id"]), reverse=True)

    # The boards took the same credits, once, through the worker's after-batch step.
    board = me.ok("GET", "/api/points/leaderboards?period=all")  # "an hour ago" may be yesterday in Shanghai
    assert board["me"]["points"] == balance and board["me"]["rank"] == 1 and board["total"] == 1
    assert board["entries"][0]["points"] == balance and board["entries"][0]["carbon_g"] == carbon
    departments = me.ok("GET", "/api/points/leaderboards/departments?period=all&metric=participation")
    assert [i["participants"] for i in departments["items"]].count(1) == 1
