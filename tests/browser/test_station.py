"""The station kiosk in Chromium: a large QR of the current code that replaces itself before it expires, the
meal slot open now, and today's scans counting up when an employee scans the code shown."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from shared import clock
from tests.browser.test_screen import LAYOUT_PROBLEMS
from tests.support import deliver_outbox

pytestmark = pytest.mark.browser

WINDOWS = [{"name": "早餐", "start": "07:00", "end": "09:00"}, {"name": "午餐", "start": "11:00", "end": "13:30"}]


def test_the_kiosk_shows_a_fresh_code_and_counts_todays_scans(
        lunchtime, browser, artifacts, api, pilot, databases, redis_client, province_token, live_server):
    station = api.post("/api/activities/stations", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "一楼食堂回收台", "kind": "canteen", "windows": WINDOWS}).json()
    device = api.post("/api/auth/devices", token=province_token,
                      json={"kind": "station", "institution_id": pilot.institution_id, "name": "一楼平板"}).json()
    employee = pilot.employee("o-kiosk", "13800000002")
    deliver_outbox(databases, redis=redis_client)  # activities learns the employee and the rule limits

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.clock.install(time=lunchtime)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/station/{station['id']}#token={device['token']}")
    page.wait_for_selector("#qr:not([hidden])")
    page.wait_for_function("() => document.getElementById('qr').naturalWidth > 100")
    assert page.text_content("#station-name") == "一楼食堂回收台"
    assert page.text_content("#window") == "午餐 11:00–13:30"
    assert page.text_content("#scans") == "0"
    first = page.get_attribute("#qr", "data-code")
    assert first and page.text_content("#code-text") == first

    scanned = api.post("/api/activities/scans", json={"code": first}, token=employee["access_token"],
                       headers={"Idempotency-Key": uuid.uuid4().hex})
    assert scanned.status_code == 201 and scanned.json()["status"] == "accepted", scanned.text
    page.clock.fast_forward(10_000)
    page.wait_for_function("() => document.getElementById('scans').textContent === '1'")
    page.screenshot(path=str(artifacts / "station-1280x800.png"))
    assert page.evaluate(LAYOUT_PROBLEMS.replace(
        "'.panel, .total, header, footer'", "'.qr-side, .info-side, .window, .count, header'").replace(
        "1920 || root.scrollHeight > 1080", "1280 || root.scrollHeight > 800").replace(
        "'.panel, .total'", "'.qr-side, .info-side'")) == []

    # The code rotates every 30 s. The server moves into the next step; the page, at 12:00:26 by its own clock
    # (before the shown code's 12:00:30), has already fetched and shown the next code.
    clock.advance(timedelta(seconds=31))
    page.clock.fast_forward(16_000)
    page.wait_for_function("c => document.getElementById('qr').dataset.code !== c", arg=first)
    assert page.get_attribute("#qr", "data-code") != first
    assert errors == []
    page.close()


def test_a_revoked_station_says_so(browser, api, pilot, province_token, live_server):
    station = api.post("/api/activities/stations", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "垃圾分类点", "kind": "sorting",
        "windows": [{"name": "全天", "start": "06:00", "end": "22:00"}]}).json()
    device = api.post("/api/auth/devices", token=province_token,
                      json={"kind": "station", "institution_id": pilot.institution_id, "name": "分类点平板"}).json()
    assert api.delete(f"/api/auth/devices/{device['id']}", token=province_token).status_code == 204
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server}/station/{station['id']}#token={device['token']}")
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == "站点凭证无效或已撤销"
    page.close()
