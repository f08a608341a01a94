"""The office screen in Chromium at 1920x1080: it shows the boards, follows a new action without reloading,
keeps its data marked stale while the API is unreachable, and recovers by itself."""

from __future__ import annotations

import uuid

import pytest

from shared import clock
from tests.support import deliver_outbox

pytestmark = pytest.mark.browser

# What does not fit: the page beyond 1920x1080, a box whose content spills, two boxes on top of each other.
LAYOUT_PROBLEMS = """() => {
    const bad = [];
    const root = document.documentElement;
    if (root.scrollWidth > 1920 || root.scrollHeight > 1080) {
        bad.push('page ' + root.scrollWidth + 'x' + root.scrollHeight);
    }
    for (const el of document.querySelectorAll('.panel, .total, header, footer')) {
        const spills = el.scrollHeight > el.clientHeight + 1 || el.scrollWidth > el.clientWidth + 1;
        if (spills) bad.push(el.className || el.tagName);
    }
    const boxes = [...document.querySelectorAll('.panel, .total')].map(e => e.getBoundingClientRect());
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i], b = boxes[j];
        if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) bad.push(i + '/' + j);
    }
    return bad;
}"""


def commute(api, token, km: float, mode: str = "bike"):
    response = api.post("/api/activities/actions", token=token, headers={"Idempotency-Key": uuid.uuid4().hex},
                        json={"type": "commute", "mode": mode, "distance_km": km,
                              "occurred_at": clock.now().isoformat()})
    assert response.status_code == 201 and response.json()["status"] == "accepted", response.text


def test_the_screen_shows_the_boards_and_follows_a_new_action_live(
        browser, artifacts, api, pilot, databases, redis_client, province_token, live_server):
    people = [pilot.employee(f"o-screen-{i}", f"1380000{i:04d}") for i in range(7)]
    deliver_outbox(databases, redis=redis_client)
    for i, person in enumerate(people[:6]):
        commute(api, person["access_token"], 3 + 2 * i, mode=("bike", "metro", "bus")[i % 3])
    deliver_outbox(databases, redis=redis_client)
    device = api.post("/api/auth/devices", token=province_token,
                      json={"kind": "screen", "institution_id": pilot.institution_id, "name": "一楼大厅屏"}).json()

    page = browser.new_page(viewport={"width": 1920, "height": 1080}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/screen/{pilot.institution_id}?interval=1#token={device['token']}")
    page.wait_for_selector("#status.live")
    assert "#token" not in page.url  # the token leaves the address bar (kept in localStorage)
    assert page.text_content("#institution") == "江西省省直机关（省行政中心）"
    assert page.locator("#people li").count() == 6
    assert page.locator("#departments li").count() >= 1
    assert page.locator("#ticker li").count() == 6
    top = page.text_content("#people li:first-child .who")
    assert top and "同学" in top  # the demo roster's nicknames, in Chinese
    week_before = page.text_content("#week-carbon")

    page.evaluate("window.__no_reload = true")
    commute(api, people[6]["access_token"], 12, mode="walk")  # 12 km on foot: the top of the board
    deliver_outbox(databases, redis=redis_client)
    page.wait_for_function("b => document.getElementById('week-carbon').textContent !== b", arg=week_before)
    assert page.evaluate("window.__no_reload") is True
    page.wait_for_selector("#ticker li.fresh")
    assert "步行" in page.text_content("#ticker li:first-child")

    shot = artifacts / "screen-1920x1080.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    # Nothing spills out of the 1920x1080 frame or out of its panels.
    overflow = page.evaluate(LAYOUT_PROBLEMS)
    assert overflow == []

    # The API goes away: the last data stays, marked stale; when it is back the screen is live again.
    shown = page.text_content("#people")
    page.route("**/api/points/screens/**", lambda route: route.abort())
    page.wait_for_selector("#status.stale")
    assert "连接中断" in page.text_content("#status") and page.text_content("#people") == shown
    page.screenshot(path=str(artifacts / "screen-stale-1920x1080.png"))
    page.unroute("**/api/points/screens/**")
    page.wait_for_selector("#status.live")
    assert page.evaluate("window.__no_reload") is True
    assert errors == []
    page.close()


def test_a_revoked_screen_says_so(browser, api, pilot, province_token, live_server):
    device = api.post("/api/auth/devices", token=province_token,
                      json={"kind": "screen", "institution_id": pilot.institution_id, "name": "会议室屏"}).json()
    assert api.delete(f"/api/auth/devices/{device['id']}", token=province_token).status_code == 204
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(f"{live_server}/screen/{pilot.institution_id}?interval=1#token={device['token']}")
    page.wait_for_selector("#status.error")
    assert page.text_content("#status") == "屏幕凭证无效或已撤销"
    page.close()
