"""The mini-program stand-in in Chromium at 375x667, the way a new employee uses it: sign in, bind, record a
commute, scan the code the station kiosk shows, read the receipts, redeem a reward and see the pickup QR; with
a token that expires on the way and a network blip under a write."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from playwright.sync_api import Error as PlaywrightError

from shared import clock
from tests.browser.waits import wait_until
from tests.support import deliver_outbox

pytestmark = pytest.mark.browser

WINDOWS = [{"name": "午餐", "start": "11:00", "end": "13:30"}]
# The page must never be wider than the phone, and no element may stick out of it.
NARROW = """() => {
    const bad = [];
    const width = window.innerWidth;
    if (document.documentElement.scrollWidth > width) bad.push('page ' + document.documentElement.scrollWidth);
    for (const el of document.querySelectorAll('main *')) {
        const box = el.getBoundingClientRect();
        if (box.width && (box.right > width + 1 || box.left < -1)) bad.push(el.tagName + '.' + el.className);
    }
    return bad;
}"""


def snap(page, artifacts, name: str) -> None:
    assert page.evaluate(NARROW) == [], name
    page.screenshot(path=str(artifacts / f"miniapp-{name}-375x667.png"))


def test_a_new_employee_gets_from_login_to_a_pickup_qr(
        lunchtime, browser, artifacts, api, pilot, databases, redis_client, province_token, live_server):
    station = api.post("/api/activities/stations", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "一楼食堂回收台", "kind": "canteen", "windows": WINDOWS}).json()
    device = api.post("/api/auth/devices", token=province_token,
                      json={"kind": "station", "institution_id": pilot.institution_id, "name": "一楼平板"}).json()
    reward = api.post("/api/rewards/catalog", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "环保购物袋", "description": "可折叠", "points_cost": 5,
        "stock": 10, "per_user_limit": 2})
    assert reward.status_code == 201, reward.text
    deliver_outbox(databases, redis=redis_client)

    phone = browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True)
    page = phone.new_page()
    page.clock.install(time=lunchtime)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/miniapp/")
    page.wait_for_selector("text=微信一键登录")
    page.fill("input[placeholder^='微信昵称']", "骑行小王")
    assert page.is_hidden("#tabs")  # no tabs before sign-in
    snap(page, artifacts, "login")
    page.click("text=微信一键登录")

    page.wait_for_selector("text=授权手机号并绑定")
    page.fill("input[type=tel]", "13899999999")
    page.click("text=授权手机号并绑定")
    page.wait_for_selector("#toast:not([hidden])")
    assert "手机号" in page.text_content("#toast")  # the API's own Chinese message: not on the roster
    snap(page, artifacts, "bind-error")
    page.fill("input[type=tel]", "13800000005")
    page.click("text=授权手机号并绑定")
    page.wait_for_selector("#balance")
    assert page.text_content("#balance") == "0"
    # The bind error belonged to the bind page; home shows the confirmation left for it.
    assert "已绑定" in page.text_content("#toast") and page.is_visible("#toast")
    deliver_outbox(databases, redis=redis_client)  # activities and points learn who the employee is
    snap(page, artifacts, "home")

    # A commute, with the network dropping the first attempt: the retry carries the same Idempotency-Key.
    dropped = []

    def drop_first(route):
        if not dropped:
            dropped.append(route.request.headers.get("idempotency-key"))
            route.abort()
        else:
            assert route.request.headers.get("idempotency-key") == dropped[0]
            route.continue_()

    page.click("text=记录出行")
    page.select_option("select", "bike")
    page.fill("input[type=number]", "5000")  # refused: the toast says which field and why
    page.click("button:has-text('提交')")
    page.wait_for_selector("#toast:has-text('请求参数有误（距离：应大于 0')")
    assert page.locator("#action-status").count() == 0
    snap(page, artifacts, "commute-refused")
    page.route("**/api/activities/actions", drop_first)
    page.fill("input[type=number]", "8")
    page.click("button:has-text('提交')")
    page.wait_for_selector("#action-status")
    assert page.text_content("#action-status") == "已入账" and len(dropped) == 1
    page.unroute("**/api/activities/actions")
    snap(page, artifacts, "commute")

    kiosk = browser.new_page(viewport={"width": 1280, "height": 800})
    kiosk.clock.install(time=lunchtime)
    kiosk.goto(f"{live_server}/station/{station['id']}#token={device['token']}")
    kiosk.wait_for_selector("#qr:not([hidden])")
    code = kiosk.get_attribute("#qr", "data-code")
    kiosk.close()
    page.goto(f"{live_server}/miniapp/#/scan")
    page.fill("textarea", code)
    page.click("button:has-text('提交')")
    page.wait_for_selector("#action-status")
    assert page.text_content("#action-status") == "已入账"
    snap(page, artifacts, "scan")
    deliver_outbox(databases, redis=redis_client)  # both credits

    page.goto(f"{live_server}/miniapp/#/ledger")
    page.wait_for_selector("#ledger li")
    receipts = page.locator("#ledger .receipt").all_text_contents()
    assert len(receipts) == 2
    assert any("公里 ×" in r and "克 CO₂e" in r for r in receipts) and any("餐 ×" in r for r in receipts)
    snap(page, artifacts, "ledger")

    # The access token expires on the way (15 minutes): the app refreshes it and goes on.
    clock.advance(timedelta(minutes=16))
    page.goto(f"{live_server}/miniapp/#/home")
    page.wait_for_selector("#balance")
    balance = int(page.text_content("#balance"))
    assert balance > 5

    page.click("a[data-tab=rewards]")
    page.wait_for_selector("#catalog li")
    page.click("#catalog button:has-text('兑换')")
    page.wait_for_selector("#redemption-status")
    assert page.text_content("#redemption-status") == "处理中"
    deliver_outbox(databases, redis=redis_client)  # the saga: rewards -> points -> rewards
    page.clock.fast_forward(1500)
    page.wait_for_selector("#redemption-status:has-text('待领取')")
    page.wait_for_function("() => document.getElementById('pickup-qr').naturalWidth > 50")
    assert page.locator(".code").text_content().startswith("P.")
    snap(page, artifacts, "pickup")

    page.click("a[data-tab=boards]")
    page.wait_for_selector("#board li")
    assert "我的排名：第 1 名" in page.text_content("main")
    snap(page, artifacts, "boards")
    page.click("a[data-tab=settings]")
    page.wait_for_selector("#visible")
    page.fill("#nickname", "骑行小王")
    page.click("button:has-text('保存昵称')")
    page.wait_for_selector("#toast:has-text('骑行小王')")
    page.uncheck("#visible")
    page.wait_for_selector("#toast:has-text('已从排行榜隐藏')")
    assert api.get("/api/points/me/boards", token=page.evaluate(
        "localStorage.getItem('lvbao.mini.access')")).json() == {"visible": False}
    snap(page, artifacts, "settings")
    assert errors == []
    phone.close()


def test_a_page_that_answers_late_does_not_replace_the_page_the_employee_moved_on_to(browser, pilot, live_server):
    pair = pilot.employee("o-mini-late", "13800000006")
    phone = browser.new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.add_init_script(f"localStorage.setItem('lvbao.mini.access', {pair['access_token']!r});"
                         f"localStorage.setItem('lvbao.mini.refresh', {pair['refresh_token']!r});")
    page.goto(f"{live_server}/miniapp/#/home")
    page.wait_for_selector("#balance")
    held, failed = [], []
    page.route("**/api/points/me/ledger?*", lambda route: held.append(route))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{live_server}/miniapp/#/ledger")
    wait_until(page, lambda: held, "the ledger's request")  # the ledger is waiting for its answer ...
    page.click("a[data-tab=boards]")  # ... when the employee moves on
    page.wait_for_selector("text=暂无上榜")  # nobody has points yet
    # Leaving the page aborted its call; an answer let through after all is not drawn either.
    wait_until(page, lambda: any("/api/points/me/ledger?" in url for url in failed), "the ledger call to be aborted")
    with contextlib.suppress(PlaywrightError):
        held[0].continue_()
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # let the late answer be drawn, if it would
    assert page.locator("text=暂无上榜").count() == 1 and page.locator("#ledger").count() == 0
    assert page.text_content("#title") == "排行榜"
    phone.close()


def test_a_session_that_ends_on_the_way_signs_in_again_and_returns_to_its_page(browser, api, pilot, live_server):
    pair = pilot.employee("o-mini-again", "13800000007")
    phone = browser.new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.goto(f"{live_server}/miniapp/#/login")
    page.evaluate(f"""() => {{
        localStorage.setItem('lvbao.mini.openid', 'o-mini-again');
        localStorage.setItem('lvbao.mini.access', {pair['access_token']!r});
        localStorage.setItem('lvbao.mini.refresh', {pair['refresh_token']!r});
    }}""")
    page.goto(f"{live_server}/miniapp/#/ledger")
    page.wait_for_selector("text=还没有积分记录")
    # Signed out elsewhere (the refresh token is revoked) and the access token no longer passes.
    assert api.post("/api/auth/logout", token=pair["access_token"],
                    json={"refresh_token": pair["refresh_token"]}).status_code == 204
    page.evaluate("() => localStorage.setItem('lvbao.mini.access', 'no-longer-valid')")
    page.click("a[data-tab=boards]")
    page.wait_for_selector("#toast:has-text('登录已失效，请重新登录')")
    assert page.evaluate("location.hash") == "#/login" and page.is_hidden("#tabs")
    page.click("button:has-text('微信一键登录')")
    page.wait_for_selector("text=暂无上榜")
    assert page.evaluate("location.hash") == "#/boards"  # back where the session ended, not at home

    # Signing out on purpose forgets the page: the next sign-in starts at home.
    page.click("a[data-tab=settings]")
    page.click("button:has-text('退出登录')")
    page.wait_for_selector("button:has-text('微信一键登录')")
    page.click("button:has-text('微信一键登录')")
    page.wait_for_selector("#balance")
    assert page.evaluate("location.hash") == "#/home"
    phone.close()
