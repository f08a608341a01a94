"""Stations, their rotating codes, and scans: one clean plate per meal slot, codes single-use and short-lived."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from services.activities.models import Action
from shared import clock, qr
from tests import factories
from tests.conftest import PROVINCE_PASSWORD
from tests.support import refreshed

LUNCH = datetime(2030, 6, 4, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
WINDOWS = [{"name": "早餐", "start": "07:00", "end": "09:00"}, {"name": "午餐", "start": "11:00", "end": "13:30"},
           {"name": "晚餐", "start": "17:00", "end": "19:30"}]

pytestmark = [pytest.mark.integration, pytest.mark.frozen_at(LUNCH)]


@pytest.fixture
def canteen(api, frozen_clock, pilot, province_token, install_limits):
    station = factories.station(api, province_token, pilot.institution_id, name="一楼食堂回收台", windows=WINDOWS)
    device = factories.device(api, province_token, pilot.institution_id, name="一楼食堂平板")
    return {**station, "device_token": device["token"]}


@pytest.fixture
def employee(pilot, frozen_clock):
    return pilot.employee("o-diner", "13800000002")


def current_code(api, station) -> dict:
    response = api.get(f"/api/activities/stations/{station['id']}/code", token=station["device_token"])
    assert response.status_code == 200, response.text
    return response.json()


def scan(api, token, code, key=None):
    return api.post("/api/activities/scans", json={"code": code}, token=token,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def test_station_shows_a_short_rotating_code_with_images(api, canteen):
    shown = current_code(api, canteen)
    assert len(shown["code"]) <= 32 and set(shown["code"]) <= set(
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$&'()*+,/:;=?@-._~")
    assert datetime.fromisoformat(shown["expires_at"]) == LUNCH + timedelta(seconds=30)
    assert current_code(api, canteen)["code"] == shown["code"]
    clock.advance(timedelta(seconds=30))
    assert current_code(api, canteen)["code"] != shown["code"]
    png = api.get(shown["png_url"].removeprefix(api.base) if shown["png_url"].startswith("http")
                  else shown["png_url"], token=canteen["device_token"])
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    svg = api.get(shown["svg_url"], token=canteen["device_token"])
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content


def test_a_clean_plate_once_per_meal_slot(api, canteen, employee, databases, frozen_clock):
    token = employee["access_token"]
    code = current_code(api, canteen)["code"]
    first = scan(api, token, code)
    assert first.status_code == 201, first.text
    assert first.json()["type"] == "clean_plate" and first.json()["status"] == "accepted"
    assert first.json()["station_id"] == canteen["id"]
    same_code = scan(api, token, code)
    assert same_code.status_code == 409 and same_code.json()["code"] == "already_recorded"
    clock.advance(timedelta(minutes=5))
    next_code = scan(api, token, current_code(api, canteen)["code"])
    assert next_code.status_code == 409 and next_code.json()["code"] == "already_recorded"
    frozen_clock.set(LUNCH + timedelta(hours=6))  # 18:00, dinner
    token = refreshed(api, employee)["access_token"]
    assert scan(api, token, current_code(api, canteen)["code"]).status_code == 201
    with databases["activities"].reader() as uow:
        assert uow.session.scalar(select(func.count(Action.id))) == 2


def test_scans_outside_meal_hours_are_refused(api, canteen, employee, frozen_clock):
    frozen_clock.set(LUNCH + timedelta(hours=2))  # 14:00
    refused = scan(api, refreshed(api, employee)["access_token"], current_code(api, canteen)["code"])
    assert refused.status_code == 422 and refused.json()["code"] == "outside_window"


def test_a_photographed_code_is_useless_once_its_window_has_passed(api, canteen, employee, pilot):
    code = current_code(api, canteen)["code"]
    clock.advance(timedelta(seconds=59))  # the next step: still accepted (one step either side)
    assert scan(api, employee["access_token"], code).status_code == 201
    colleague = pilot.employee("o-photo", "13800000005")
    clock.advance(timedelta(seconds=31))  # two steps on: the photo passed around is worthless
    expired = scan(api, colleague["access_token"], code)
    assert expired.status_code == 410 and expired.json()["code"] == "qr_expired"


def test_forged_and_garbled_codes(api, canteen, employee, pilot, province_token):
    token = employee["access_token"]
    code = current_code(api, canteen)["code"]
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    for bad in (tampered, "hello", "L.zzzzzz.1.AAAAAAAAAAAAAAAA", qr.code_for(canteen["id"], "guess", LUNCH).text,
                qr.code_for(canteen["id"], "guess", LUNCH + timedelta(minutes=5)).text):
        refused = scan(api, token, bad)
        assert refused.status_code == 400 and refused.json()["code"] == "qr_invalid", bad
    assert scan(api, token, "").status_code == 422


def test_another_institutions_station(api, canteen, pilot, province_token, frozen_clock):
    other = factories.institution(api, province_token, name="抚州市某局", code="fz-x")
    station = factories.station(api, province_token, other["id"], name="食堂", windows=WINDOWS)
    employee = pilot.employee("o-visitor", "13800000003")
    refused = api.get(f"/api/activities/stations/{station['id']}/code", token=canteen["device_token"])
    assert refused.status_code == 403
    code = api.get(f"/api/activities/stations/{station['id']}/code", token=province_token).json()["code"]
    assert scan(api, employee["access_token"], code).status_code == 403


def test_waste_sorting_follows_the_rules_daily_limit(api, frozen_clock, pilot, province_token, install_limits):
    station = factories.station(api, province_token, pilot.institution_id, name="分类点", kind="sorting", windows=[
        {"name": "早", "start": "07:00", "end": "10:00"}, {"name": "中", "start": "10:00", "end": "12:00"},
        {"name": "晚", "start": "12:00", "end": "20:00"}])
    employee = pilot.employee("o-sorter", "13800000004")

    def sort_at(moment):
        frozen_clock.set(moment)
        code = api.get(f"/api/activities/stations/{station['id']}/code",
                       token=pilot.admin_login("admin", PROVINCE_PASSWORD)["access_token"]).json()["code"]
        return scan(api, refreshed(api, employee)["access_token"], code)

    morning = sort_at(LUNCH - timedelta(hours=3))  # 09:00
    assert morning.status_code == 201 and morning.json()["type"] == "waste_sorting"
    assert sort_at(LUNCH - timedelta(hours=2, minutes=30)).json()["code"] == "already_recorded"  # same period
    assert sort_at(LUNCH - timedelta(hours=1)).status_code == 201  # 11:00
    third = sort_at(LUNCH + timedelta(hours=1))  # 13:00: a new period, but the rule allows 2 a day
    assert third.status_code == 409 and third.json()["code"] == "already_recorded"
    assert sort_at(LUNCH + timedelta(days=1) - timedelta(hours=3)).status_code == 201  # the next day counts afresh


def test_twenty_concurrent_scans_of_one_code_record_one_action(api, canteen, employee, databases, live_server):
    token = employee["access_token"]
    code = current_code(api, canteen)["code"]
    barrier, statuses = threading.Barrier(20), []

    def one(i):
        session = requests.Session()
        barrier.wait()
        statuses.append(session.post(f"{live_server}/api/activities/scans", json={"code": code},
                                     headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k{i}"},
                                     timeout=30).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 19
    with databases["activities"].reader() as uow:
        assert uow.session.scalar(select(func.count(Action.id))) == 1


def test_station_administration(api, canteen, pilot, province_token, employee):
    sid = canteen["id"]
    bad = api.post("/api/activities/stations", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "x", "kind": "canteen",
        "windows": [{"name": "午餐", "start": "13:00", "end": "11:00"}, {"name": "午餐", "start": "25:00",
                                                                         "end": "26:00"}]})
    assert bad.status_code == 422 and "windows" in bad.json()["errors"]
    overlapping = api.post("/api/activities/stations", token=province_token, json={
        "institution_id": pilot.institution_id, "name": "x", "kind": "canteen",
        "windows": [{"name": "a", "start": "11:00", "end": "13:00"}, {"name": "b", "start": "12:00", "end": "14:00"}]})
    assert overlapping.status_code == 422
    listed = api.get("/api/activities/stations", token=province_token,
                     params={"institution_id": pilot.institution_id}).json()["items"]
    assert [s["id"] for s in listed] == [sid] and "qr_secret" not in listed[0]
    code = current_code(api, canteen)["code"]
    rotated = api.request("PATCH", f"/api/activities/stations/{sid}", json={"rotate_secret": True},
                          token=province_token)
    assert rotated.status_code == 200
    assert scan(api, employee["access_token"], code).json()["code"] == "qr_invalid"
    assert api.delete(f"/api/activities/stations/{sid}", token=province_token).status_code == 204
    assert api.get(f"/api/activities/stations/{sid}/code", token=canteen["device_token"]).status_code == 409
    assert api.post("/api/activities/stations", token=employee["access_token"], json={}).status_code == 403
    assert api.get(f"/api/activities/stations/{sid}/code", token=employee["access_token"]).status_code == 403


def test_a_retried_scan_gets_its_first_answer_even_after_the_code_expired(api, canteen, employee, databases):
    code = current_code(api, canteen)["code"]
    first = scan(api, employee["access_token"], code, key="scan-1")
    clock.advance(timedelta(minutes=3))  # the phone lost the answer and retries later
    again = scan(api, refreshed(api, employee)["access_token"], code, key="scan-1")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    refused = scan(api, employee["access_token"], code, key="scan-2")
    assert refused.status_code == 410
    assert scan(api, employee["access_token"], code, key="scan-2").json() == refused.json()  # refusals replay too
    with databases["activities"].reader() as uow:
        assert uow.session.scalar(select(func.count(Action.id))) == 1


def test_codes_with_characters_outside_the_alphabet_are_invalid(api, canteen, employee):
    for bad in (f"L.{canteen['id']:x}.1." + "\u00e9" * 16, "L.1.1.AAAAAAAAAAAAAAA!", "L.\u00b2.1.AAAAAAAAAAAAAAAA"):
        refused = scan(api, employee["access_token"], bad)
        assert refused.status_code == 400 and refused.json()["code"] == "qr_invalid", bad


def test_the_kiosk_counts_todays_scans_at_its_station_for_its_institution(api, canteen, employee, province_token):
    kiosk = f"/api/activities/stations/{canteen['id']}/kiosk"
    before = api.get(kiosk, token=canteen["device_token"])
    assert before.status_code == 200, before.text
    assert before.json()["scans_today"] == 0 and before.json()["window"]["name"] == "午餐"
    assert scan(api, employee["access_token"], current_code(api, canteen)["code"]).status_code == 201
    again = scan(api, employee["access_token"], current_code(api, canteen)["code"])
    assert again.status_code == 409  # one per meal slot: not a second scan
    assert api.get(kiosk, token=canteen["device_token"]).json()["scans_today"] == 1
    assert api.get(kiosk, token=province_token).json()["station"]["name"] == "一楼食堂回收台"
    assert api.get(kiosk, token=employee["access_token"]).json()["code"] == "forbidden_role"
    other = factories.institution(api, province_token, name="别家", code="other-k")
    foreign = factories.device(api, province_token, other["id"], name="别家平板")
    assert api.get(kiosk, token=foreign["token"]).json()["code"] == "forbidden_institution"


# -- printed sheets: a station without a screen -------------------------------------------------------------------


def sheet(api, station_id, token, **params):
    return api.get(f"/api/activities/stations/{station_id}/sheet", token=token, params=params)


def test_a_sheet_is_printed_only_for_a_station_that_accepts_printed_codes(api, canteen, province_token, employee):
    sid = canteen["id"]
    assert canteen["printed_codes"] is False
    refused = sheet(api, sid, province_token)
    assert refused.status_code == 409 and refused.json()["code"] == "printed_codes_disabled"
    assert "开启" in refused.json()["message"]
    assert sheet(api, sid, canteen["device_token"]).status_code == 403  # the kiosk shows live codes only
    assert sheet(api, sid, employee["access_token"]).status_code == 403
    printed = qr.printed_code_for(sid, "unknown", LUNCH.astimezone(clock.LOCAL_TZ).date()).text
    assert scan(api, employee["access_token"], printed).json()["code"] == "qr_invalid"

    turned_on = api.request("PATCH", f"/api/activities/stations/{sid}", json={"printed_codes": True},
                            token=province_token)
    assert turned_on.status_code == 200 and turned_on.json()["printed_codes"] is True
    week = sheet(api, sid, province_token)
    assert week.status_code == 200, week.text
    days = week.json()["days"]
    assert [d["date"] for d in days] == [(LUNCH + timedelta(days=n)).astimezone(clock.LOCAL_TZ).date().isoformat()
                                         for n in range(7)]
    assert len({d["code"] for d in days}) == 7 and all(len(d["code"]) <= 32 for d in days)
    assert week.json()["station"]["name"] == canteen["name"]
    png = api.get(days[0]["png_url"], token=province_token)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = api.get(days[1]["svg_url"], token=province_token)
    assert svg.status_code == 200 and b"<svg" in svg.content


def test_a_printed_code_works_on_its_day_once_per_meal_slot(api, canteen, province_token, employee, pilot, databases,
                                                             frozen_clock):
    sid = canteen["id"]
    api.request("PATCH", f"/api/activities/stations/{sid}", json={"printed_codes": True}, token=province_token)
    today, tomorrow = sheet(api, sid, province_token, days=2).json()["days"]
    token = employee["access_token"]
    early = scan(api, token, tomorrow["code"])
    assert early.status_code == 400 and early.json()["code"] == "qr_not_yet_valid"
    lunch = scan(api, token, today["code"])
    assert lunch.status_code == 201 and lunch.json()["type"] == "clean_plate", lunch.text
    again = scan(api, token, today["code"])
    assert again.status_code == 409 and again.json()["code"] == "already_recorded"
    # The kiosk's live code in the same slot is the same meal.
    assert scan(api, token, current_code(api, canteen)["code"]).json()["code"] == "already_recorded"
    colleague = pilot.employee("o-sheet", "13800000006")
    assert scan(api, colleague["access_token"], today["code"]).status_code == 201

    frozen_clock.set(LUNCH + timedelta(hours=6))  # dinner: the day's sheet serves every slot of its day
    token = refreshed(api, employee)["access_token"]
    assert scan(api, token, today["code"]).status_code == 201
    frozen_clock.set(LUNCH + timedelta(days=1))  # the next lunch: yesterday's line is spent, today's works
    token = refreshed(api, employee)["access_token"]
    stale = scan(api, token, today["code"])
    assert stale.status_code == 410 and stale.json()["code"] == "qr_expired"
    assert scan(api, token, tomorrow["code"]).status_code == 201
    with databases["activities"].reader() as uow:
        printed = uow.session.scalars(select(Action).where(Action.station_id == sid)).all()
        assert len(printed) == 4 and all(a.details.get("printed_day") for a in printed)


def test_a_new_secret_voids_the_printed_sheets_and_turning_them_off_refuses_them(
        api, canteen, province_token, employee, pilot):
    sid = canteen["id"]
    api.request("PATCH", f"/api/activities/stations/{sid}", json={"printed_codes": True}, token=province_token)
    old = sheet(api, sid, province_token, days=1).json()["days"][0]["code"]
    api.request("PATCH", f"/api/activities/stations/{sid}", json={"rotate_secret": True}, token=province_token)
    assert scan(api, employee["access_token"], old).json()["code"] == "qr_invalid"
    new = sheet(api, sid, province_token, days=1).json()["days"][0]["code"]
    assert new != old
    api.request("PATCH", f"/api/activities/stations/{sid}", json={"printed_codes": False}, token=province_token)
    refused = scan(api, employee["access_token"], new)
    assert refused.status_code == 400 and refused.json()["code"] == "qr_invalid"
    assert "打印" in refused.json()["message"]


def test_sheet_arguments_are_checked(api, canteen, province_token):
    sid = canteen["id"]
    api.request("PATCH", f"/api/activities/stations/{sid}", json={"printed_codes": True}, token=province_token)
    today = LUNCH.astimezone(clock.LOCAL_TZ).date()
    for params, field in (({"from": (today - timedelta(days=1)).isoformat()}, "from"),
                          ({"from": "9999-12-31"}, "from"), ({"from": "0001-01-01"}, "from"),
                          ({"from": (today + timedelta(days=366)).isoformat(), "days": 2}, "days"),
                          ({"days": 0}, "days"), ({"days": 32}, "days"), ({"from": "tomorrow"}, "from")):
        refused = sheet(api, sid, province_token, **params)
        assert refused.status_code == 422 and field in refused.json()["errors"], (params, refused.text)
    for day in ("2030-13-01", "yesterday!"):
        image = api.get(f"/api/activities/stations/{sid}/sheet/{day}.png", token=province_token)
        assert image.status_code in (404, 422) and image.json()["status"] == image.status_code
    past = api.get(f"/api/activities/stations/{sid}/sheet/{(today - timedelta(days=1)).isoformat()}.svg",
                   token=province_token)
    assert past.status_code == 422
    assert sheet(api, 999999, province_token).status_code == 404
    api.delete(f"/api/activities/stations/{sid}", token=province_token)
    assert sheet(api, sid, province_token).json()["code"] == "station_inactive"
