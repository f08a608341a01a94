"""The boards over HTTP: who may read which board, the caller's rank, opting out, and the office screen."""

from __future__ import annotations

import uuid

import pytest

from shared import clock
from tests import factories
from tests.support import deliver_outbox

pytestmark = pytest.mark.integration

BOARDS = "/api/points/leaderboards"


def commute(api, token, km: float, mode: str = "metro"):
    response = api.post("/api/activities/actions", token=token, headers={"Idempotency-Key": uuid.uuid4().hex},
                        json={"type": "commute", "mode": mode, "distance_km": km,
                              "occurred_at": clock.now().isoformat()})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def people(api, pilot, databases, redis_client):
    """Three bound employees of the pilot (two in one department) with this week's commutes, delivered to
    points and the boards as the relay and worker would."""
    made = {name: pilot.employee(f"o-{name}", phone) for name, phone in
            (("a", "13800000000"), ("b", "13800000004"), ("c", "13800000001"))}
    deliver_outbox(databases, redis=redis_client)
    for name, km in (("a", 12), ("b", 12), ("c", 5)):
        commute(api, made[name]["access_token"], km)
    deliver_outbox(databases, redis=redis_client)
    return made


def test_an_employee_sees_nicknames_ranks_with_ties_and_their_own_rank(api, people):
    board = api.get(BOARDS, params={"period": "week", "limit": 2}, token=people["c"]["access_token"])
    assert board.status_code == 200, board.text
    body = board.json()
    assert [e["rank"] for e in body["entries"]] == [1, 1]  # a and b walked the same
    assert body["entries"][0]["points"] == body["entries"][1]["points"] > 0
    assert all(set(e) == {"rank", "nickname", "department", "points", "carbon_g"} for e in body["entries"])
    assert body["me"]["rank"] == 3 and body["total"] == 3 and body["period_key"].count("-W") == 1
    nicknames = {e["nickname"] for e in body["entries"]}
    assert nicknames and not any(n.startswith("E1") for n in nicknames)  # nicknames, never employee numbers


def test_department_boards_and_rankings_are_limited_to_the_callers_institution(api, pilot, people, province_token):
    token = people["a"]["access_token"]
    mine = api.get(BOARDS, params={"scope": "department"}, token=token)
    assert mine.status_code == 200, mine.text
    assert mine.json()["scope"] == "department" and mine.json()["me"]["rank"] == 1
    ranking = api.get(f"{BOARDS}/departments", params={"metric": "participation"}, token=token)
    assert ranking.status_code == 200, ranking.text
    items = ranking.json()["items"]
    assert len(items) == len(pilot.departments) and items[0]["participants"] >= 1
    assert all(0 <= i["participation"] <= 1 and i["headcount"] > 0 for i in items)

    other = factories.institution(api, province_token, name="别的单位", code="other-1")
    foreign = api.get(BOARDS, params={"scope_id": other["id"]}, token=token)
    assert foreign.status_code == 403 and foreign.json()["code"] == "forbidden_institution"
    assert api.get(BOARDS, params={"scope_id": other["id"]}, token=province_token).status_code == 200
    missing = api.get(BOARDS, params={"scope": "department", "scope_id": 999999}, token=token)
    assert missing.status_code == 404 and missing.json()["code"] == "department_not_found"
    bad = api.get(BOARDS, params={"period": "year"}, token=token)
    assert bad.status_code == 422 and "period" in str(bad.json()["errors"])
    unbound = pilot.wechat_login("o-nobody")["access_token"]
    assert api.get(BOARDS, token=unbound).json()["code"] == "not_bound"
    assert api.get(BOARDS).status_code == 401


def test_opting_out_hides_the_employee_but_keeps_their_rank_for_them(api, people, redis_client):
    token = people["a"]["access_token"]
    assert api.get("/api/points/me/boards", token=token).json() == {"visible": True}
    hidden = api.request("PUT", "/api/points/me/boards", token=token, json={"visible": False})
    assert hidden.status_code == 200 and hidden.json() == {"visible": False}
    seen_by_c = api.get(BOARDS, token=people["c"]["access_token"]).json()
    assert seen_by_c["total"] == 2 and seen_by_c["me"]["rank"] == 2  # a is no longer listed
    own = api.get(BOARDS, token=token).json()
    assert own["me"]["hidden"] is True and own["me"]["rank"] == 1
    assert len(own["entries"]) == 2
    bad = api.request("PUT", "/api/points/me/boards", token=token, json={"visible": "maybe"})
    assert bad.status_code == 422 and api.get("/api/points/me/boards", token=token).json() == {"visible": False}


def test_the_screen_payload_is_for_that_institutions_screens_and_admins(api, pilot, people, province_token):
    device = factories.device(api, province_token, pilot.institution_id, kind="screen", name="大厅屏")
    screen_token = device["token"]
    answer = api.get(f"/api/points/screens/{pilot.institution_id}", token=screen_token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["institution"]["name"] == "江西省省直机关（省行政中心）"
    assert body["week"]["carbon_g"] > 0 and body["week"]["trees"] == round(body["week"]["carbon_g"] / 18300, 1)
    assert "18.3" in body["equivalent"]["note"]
    assert len(body["individuals"]["entries"]) == 3 and body["individuals"]["me"] is None
    assert len(body["ticker"]) == 3 and all("nickname" not in item for item in body["ticker"])

    other = factories.institution(api, province_token, name="别的单位", code="other-2")
    assert api.get(f"/api/points/screens/{other['id']}", token=screen_token).status_code == 403
    employee = api.get(f"/api/points/screens/{pilot.institution_id}", token=people["a"]["access_token"])
    assert employee.status_code == 403 and employee.json()["code"] == "forbidden_role"
    assert api.delete(f"/api/auth/devices/{device['id']}", token=province_token).status_code == 204
    revoked = api.get(f"/api/points/screens/{pilot.institution_id}", token=screen_token)
    assert revoked.status_code == 401 and revoked.json()["code"] == "device_revoked"


def test_the_screen_page_is_served_with_its_assets(api):
    page = api.get("/screen/1")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "/web/screen.js" in page.text
    assert api.get("/web/screen.js").status_code == 200
    assert api.get("/web/../pyproject.toml").status_code == 404


def test_a_new_nickname_reaches_the_boards(api, people, databases, redis_client):
    token = people["c"]["access_token"]
    renamed = api.request("PATCH", "/api/auth/me", token=token, json={"nickname": "  低碳达人 "})
    assert renamed.status_code == 200 and renamed.json()["nickname"] == "低碳达人", renamed.text
    deliver_outbox(databases, redis=redis_client)
    names = [e["nickname"] for e in api.get(BOARDS, token=token).json()["entries"]]
    assert "低碳达人" in names
    blank = api.request("PATCH", "/api/auth/me", token=token, json={"nickname": "   "})
    assert blank.status_code == 422 and blank.json()["code"] == "validation_error"
