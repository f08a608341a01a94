"""The admin console in Chromium at 1366x768: sign in, publish a rule version after previewing its receipt,
create a reward, import a roster with one bad row and see that row named, approve a flagged action, and
download the monthly CSV."""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from shared import clock
from tests.browser.waits import wait_until
from tests.conftest import PROVINCE_PASSWORD
from tests.support import deliver_outbox

pytestmark = pytest.mark.browser

WIDE = """() => {
    const bad = [];
    const width = document.documentElement.scrollWidth;
    if (width > window.innerWidth) bad.push('page ' + width);
    for (const el of document.querySelectorAll('.card')) {
        if (el.getBoundingClientRect().right > window.innerWidth + 1) bad.push('card past the edge');
    }
    return bad;
}"""


def snap(page, artifacts, name: str) -> None:
    assert page.evaluate(WIDE) == [], name
    page.screenshot(path=str(artifacts / f"admin-{name}-1366x768.png"), full_page=True)


def commute(api, token):
    return api.post("/api/activities/actions", token=token, headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"type": "commute", "mode": "bus", "distance_km": 6, "occurred_at": clock.now().isoformat()})


def test_an_admin_runs_the_institution_from_the_console(
        browser, artifacts, api, pilot, databases, redis_client, live_server, tmp_path):
    employee = pilot.employee("o-admin-flow", "13800000007")
    deliver_outbox(databases, redis=redis_client)
    assert commute(api, employee["access_token"]).json()["status"] == "accepted"
    flagged = commute(api, employee["access_token"]).json()  # the same trip again: held for review
    assert flagged["status"] == "pending_review", flagged

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/admin/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("button:has-text('登录')")
    page.wait_for_selector("#toast:not([hidden])")
    assert "密码" in page.text_content("#toast")
    assert page.is_hidden("#menu") and page.is_hidden("#logout")  # nothing to open before sign-in
    snap(page, artifacts, "login")
    page.fill("input[name=password]", PROVINCE_PASSWORD)
    page.click("button:has-text('登录')")

    # Rules: the preview follows the form before anything is published.
    page.wait_for_selector("#preview")
    # The wrong password's message stayed with the sign-in page.
    assert page.is_hidden("#toast"), page.text_content("#toast")
    page.select_option("select[name=action_type]", "commute")
    page.fill("input[name=factor]", "300")
    page.fill("input[name=quantity]", "10")
    page.wait_for_function("() => document.getElementById('preview').textContent.includes('3000 克')")
    assert "→ 60 分" in page.text_content("#preview")  # 3000 g at 50 g a point
    page.get_by_role("button", name="发布新版本").click()
    page.wait_for_selector("#toast:not([hidden])")
    assert "第 2 版" in page.text_content("#toast"), page.text_content("#toast")
    page.click("#page tr:has-text('绿色出行') button:has-text('历史版本')")
    page.wait_for_selector("#versions tr:nth-child(3)")  # the header, version 2 and version 1
    snap(page, artifacts, "rules")

    page.click("a[href='#/rewards']")
    page.wait_for_selector("input[name=name]")
    page.fill("input[name=name]", "保温杯")
    page.fill("input[name=points_cost]", "0")  # refused: the error stands under its field
    page.fill("input[name=stock]", "5")
    page.click("button:has-text('新建奖品')")
    page.wait_for_selector("input[name=points_cost][aria-invalid=true] + .field-error")
    assert page.text_content("input[name=points_cost] + .field-error") == "应不小于 1 且不大于 10000000"
    assert page.locator("#rewards td:has-text('保温杯')").count() == 0
    snap(page, artifacts, "rewards-refused")
    page.fill("input[name=points_cost]", "200")
    page.click("button:has-text('新建奖品')")
    page.wait_for_selector("#rewards td:has-text('保温杯')")
    page.click("#rewards tr:has-text('保温杯') button:has-text('编辑')")
    page.fill("#reward-editor input[name=points_cost]", "250")
    page.fill("#reward-editor input[name=description]", "不锈钢，500 毫升")
    page.click("#reward-editor button:has-text('保存')")
    page.wait_for_selector("#rewards tr:has-text('保温杯') td:text-is('250')")
    assert page.locator("#reward-editor .card").count() == 0  # the editor closes once saved
    page.click("#rewards tr:has-text('保温杯') button:has-text('下架')")
    page.wait_for_selector("#rewards tr:has-text('保温杯') td:has-text('已下架')")
    snap(page, artifacts, "rewards")

    page.click("a[href='#/roster']")
    roster = tmp_path / "roster.csv"
    roster.write_text("employee_no,name,phone,department_code,nickname\n"
                      "E2001,赵一,13900000001,office,一号\nE2002,钱二,13900000002,nosuch,二号\n", encoding="utf-8")
    page.set_input_files("#roster-file", str(roster))
    page.click("button:has-text('导入名册')")
    page.wait_for_selector("#roster-result li")
    assert "第 3 行 — 部门编码：没有编码为“nosuch”的部门" in page.text_content("#roster-result")
    snap(page, artifacts, "roster")

    page.click("a[href='#/reviews']")
    page.wait_for_selector("#reviews")
    assert page.locator("#reviews tr").count() == 2  # the header and the flagged trip
    snap(page, artifacts, "reviews")
    page.click("#reviews button:has-text('通过')")
    page.wait_for_selector("text=没有待审核的行为")
    deliver_outbox(databases, redis=redis_client)  # both trips credited

    page.click("a[href='#/stats']")
    page.wait_for_selector(".bar")
    assert "低碳行为 2 次" in page.text_content("main")
    snap(page, artifacts, "stats")
    with page.expect_download() as downloading:
        page.click("button:has-text('下载月度 CSV')")
    saved = Path(downloading.value.path()).read_text(encoding="utf-8")
    assert saved.startswith("\ufeff工号,昵称,部门,积分") and "E1008" in saved
    page.click("a[href='#/devices']")
    page.wait_for_selector("select[name=kind]")
    page.fill("input[name=name]", "二楼大厅屏幕")
    page.click("button:has-text('生成凭证')")
    page.wait_for_selector("td:has-text('二楼大厅屏幕')")  # listed, and its credential shown this once
    token = page.text_content("#credential .secret")
    assert page.text_content("#credential .address").endswith(f"/screen/{pilot.institution_id}#token={token}")
    assert api.get(f"/api/points/screens/{pilot.institution_id}", token=token).status_code == 200
    snap(page, artifacts, "devices")
    # A credential whose answer comes after the admin moved on is kept for the devices page, not lost.
    held = []
    page.route("**/api/auth/devices", lambda route: held.append(route))
    page.fill("input[name=name]", "三楼屏幕")
    page.click("button:has-text('生成凭证')")
    wait_until(page, lambda: held, "the new device's request")
    page.click("a[href='#/stats']")
    page.wait_for_selector("text=下载月度 CSV")
    with page.expect_response("**/api/auth/devices"):
        held[0].continue_()
    page.unroute("**/api/auth/devices")
    page.click("a[href='#/devices']")
    page.wait_for_selector("td:has-text('三楼屏幕')")
    later = page.text_content("#credential .secret")
    assert later != token and api.get(f"/api/points/screens/{pilot.institution_id}", token=later).status_code == 200
    assert errors == []
    page.close()


def sign_in(page, live_server) -> None:
    page.goto(f"{live_server}/admin/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PROVINCE_PASSWORD)
    page.click("button:has-text('登录')")
    page.wait_for_selector("#menu:not([hidden])")


def test_an_admin_sets_up_a_station_without_a_screen_and_prints_its_week_of_codes(
        lunchtime, browser, artifacts, api, pilot, databases, redis_client, live_server):
    employee = pilot.employee("o-sheet-reader", "13800000008")
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # "更换密钥" asks first
    page.clock.install(time=lunchtime)
    sign_in(page, live_server)

    page.click("a[href='#/stations']")
    page.fill("input[name=name]", "三楼分类点")
    page.select_option("select[name=kind]", "sorting")
    page.fill("textarea[name=windows]", "上午 07:00-12:00\n下午 12:00-20:00")
    page.click("button:has-text('新建站点')")
    page.wait_for_selector("#stations tr:has-text('三楼分类点')")
    assert page.locator("#stations tr:has-text('三楼分类点') button:has-text('打印二维码')").count() == 0
    page.click("#stations tr:has-text('三楼分类点') button:has-text('编辑')")
    page.fill("#station-editor input[name=name]", "三楼东侧分类点")
    page.select_option("#station-editor select[name=printed_codes]", "true")
    page.click("#station-editor button:has-text('保存')")
    page.wait_for_selector("#stations tr:has-text('三楼东侧分类点') td:text-is('接受')")
    snap(page, artifacts, "stations")

    page.click("#stations tr:has-text('三楼东侧分类点') button:has-text('打印二维码')")
    page.wait_for_function("() => { const images = [...document.querySelectorAll('#sheet img')]; "
                           "return images.length === 7 && images.every((i) => i.complete && i.naturalWidth > 0); }")
    first = page.locator("#sheet .sheet-page").first
    assert "三楼东侧分类点" in first.text_content() and "仅限当日使用" in first.text_content()
    snap(page, artifacts, "sheet")
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    (artifacts / "admin-sheet.pdf").write_bytes(pdf)
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 7  # one A4 page a day
    page.emulate_media(media="screen")

    # Today's page works at the bins; a new secret voids the printed sheet.
    today = page.get_attribute("#sheet .sheet-page:first-child img", "data-code")
    scanned = api.post("/api/activities/scans", json={"code": today}, token=employee["access_token"],
                       headers={"Idempotency-Key": uuid.uuid4().hex})
    assert scanned.status_code == 201 and scanned.json()["type"] == "waste_sorting", scanned.text
    page.click("button:has-text('返回站点')")
    page.click("#stations tr:has-text('三楼东侧分类点') button:has-text('更换密钥')")
    page.wait_for_selector("#toast:has-text('作废')")
    voided = api.post("/api/activities/scans", json={"code": today}, token=employee["access_token"],
                        headers={"Idempotency-Key": uuid.uuid4().hex})
    assert voided.json()["code"] == "qr_invalid"
    assert errors == []
    page.close()


def test_a_page_that_answers_late_does_not_replace_the_page_the_admin_moved_on_to(browser, pilot, live_server):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, live_server)
    page.wait_for_selector("#versions", state="attached")  # the rules page is drawn
    held, failed = [], []
    page.route("**/api/activities/stations?*", lambda route: held.append(route))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.click("a[href='#/stations']")
    wait_until(page, lambda: held, "the stations page's request")  # the stations page is waiting for its answer ...
    page.click("a[href='#/rewards']")  # ... when the admin moves on
    page.wait_for_selector("#rewards")
    # Leaving the page aborted its call; an answer let through after all is not drawn either.
    wait_until(page, lambda: any("/api/activities/stations?" in url for url in failed),
               "the stations call to be aborted")
    with contextlib.suppress(PlaywrightError):
        held[0].continue_()
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # let the late answer be drawn, if it would
    assert page.locator("#rewards").count() == 1 and page.locator("#stations").count() == 0
    assert page.locator("#menu a.on").get_attribute("href") == "#/rewards"
    page.close()


def test_an_institution_admin_sees_only_their_institution_and_the_province_admin_picks_any(
        browser, api, pilot, province_token, live_server):
    other = api.post("/api/auth/institutions", json={"name": "南昌市机关事务局", "code": "NC-JG"},
                     token=province_token).json()["id"]
    for institution_id, name in ((pilot.institution_id, "本单位水杯"), (other, "南昌帆布袋")):
        made = api.post("/api/rewards/catalog", token=province_token, json={
            "institution_id": institution_id, "name": name, "points_cost": 10, "stock": 3})
        assert made.status_code == 201, made.text
    assert api.post("/api/auth/admins", token=province_token, json={
        "username": "center-admin", "password": "center-admin-pw", "institution_id": pilot.institution_id,
    }).status_code == 201

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(f"{live_server}/admin/#/rewards")
    page.fill("input[name=username]", "center-admin")
    page.fill("input[name=password]", "center-admin-pw")
    page.click("button:has-text('登录')")
    page.wait_for_selector("#rewards")  # back to the page the sign-in was asked for
    assert page.locator("#institution").count() == 0  # nothing to pick: their own institution, by name
    assert page.text_content("#scope") == api.get(f"/api/auth/institutions/{pilot.institution_id}",
                                                  token=province_token).json()["name"]
    assert "本单位水杯" in page.text_content("#rewards") and "南昌帆布袋" not in page.text_content("#rewards")
    refresh = page.evaluate("sessionStorage.getItem('lvbao.admin.refresh')")
    page.click("#logout")
    page.wait_for_selector("input[name=username]")
    assert page.is_hidden("#menu") and page.text_content("#scope") == ""
    assert api.post("/api/auth/refresh", json={"refresh_token": refresh}).status_code == 401  # revoked

    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PROVINCE_PASSWORD)
    page.click("button:has-text('登录')")
    page.click("a[href='#/rewards']")
    page.wait_for_selector("#rewards:has-text('本单位水杯')")
    page.select_option("#institution", str(other))
    page.wait_for_selector("#rewards:has-text('南昌帆布袋')")
    assert "本单位水杯" not in page.text_content("#rewards")
    assert page.is_enabled("#institution")
    page.close()


def test_expired_tokens_refresh_once_and_an_ended_session_signs_in_back_to_its_page(
        browser, api, pilot, province_token, live_server):
    other = api.post("/api/auth/institutions", json={"name": "九江市机关事务局", "code": "JJ-JG"},
                     token=province_token).json()["id"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    # The page's timers run only when the test says (the preview waits 250 ms for typing to stop).
    start = datetime.now(UTC)
    page.clock.install(time=start)
    page.clock.pause_at(start + timedelta(seconds=1))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    refreshes = []
    page.on("request", lambda r: refreshes.append(r) if r.url.endswith("/api/auth/refresh") else None)
    previews = []
    page.on("request", lambda r: previews.append(r) if r.url.endswith("/rules/preview") else None)
    sign_in(page, live_server)
    page.wait_for_selector("#versions", state="attached")
    with page.expect_response("**/rules/preview"):
        page.clock.run_for(300)  # the rules page previews its example
    page.fill("input[name=quantity]", "12")  # another preview is due in 250 ms ...
    page.click("a[href='#/rewards']")  # ... but the admin leaves the rules page first
    page.wait_for_selector("#rewards")
    page.clock.run_for(1000)
    page.wait_for_timeout(200)
    assert len(previews) == 1  # no preview for a page no longer shown

    # The access token lapses: the statistics page's three calls share one refresh (a second use of the
    # rotated refresh token would revoke the session).
    page.evaluate("() => sessionStorage.setItem('lvbao.admin.access', 'expired')")
    page.click("a[href='#/stats']")
    page.wait_for_selector("text=下载月度 CSV")
    assert len(refreshes) == 1
    page.click("a[href='#/rewards']")
    page.wait_for_selector("#rewards")
    assert page.is_visible("#menu") and page.text_content("#who") == "admin"

    # Signed out elsewhere: the next call ends the session; signing in again returns to the page, and to the
    # institution the admin was working in.
    page.select_option("#institution", str(other))
    page.wait_for_selector("#rewards:has-text('暂无')")
    tokens = page.evaluate("() => [sessionStorage.getItem('lvbao.admin.access'), "
                           "sessionStorage.getItem('lvbao.admin.refresh')]")
    assert api.post("/api/auth/logout", token=tokens[0], json={"refresh_token": tokens[1]}).status_code == 204
    page.evaluate("() => sessionStorage.setItem('lvbao.admin.access', 'expired')")
    page.click("a[href='#/stations']")
    page.wait_for_selector("#toast:has-text('登录已失效，请重新登录')")
    assert page.evaluate("location.hash") == "#/stations"
    assert page.is_hidden("#menu") and page.text_content("#who") == "" and page.text_content("#scope") == ""
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PROVINCE_PASSWORD)
    page.click("button:has-text('登录')")
    page.wait_for_selector("#stations")
    assert page.evaluate("location.hash") == "#/stations" and page.text_content("#who") == "admin"
    assert page.input_value("#institution") == str(other)
    assert errors == []
    page.close()
