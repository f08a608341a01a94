"""Admin statistics and the monthly CSV over HTTP, from the ledger, limited to the admin's institution."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from shared import clock
from shared.events import ActionReversed
from tests import factories
from tests.conftest import PROVINCE_PASSWORD
from tests.support import deliver_outbox

pytestmark = pytest.mark.integration


@pytest.fixture
def credited(api, pilot, databases, frozen_clock):
    """Three employees of the pilot over two days of November 2030 (Shanghai), one action reversed."""
    deliver_outbox(databases)  # points learns the departments' names
    frozen_clock.set(datetime(2030, 11, 20, 12, 0, tzinfo=clock.LOCAL_TZ), signing_key=True)
    finance, office = pilot.departments["finance"], pilot.departments["office"]
    people = {1001: finance, 1002: finance, 1003: office}
    events = [factories.member_event(u, pilot.institution_id, department_id=d, nickname=f"=n{u}")
              for u, d in people.items()]
    at = lambda days: clock.now() - timedelta(days=days)  # noqa: E731
    for action_id, (user, km, days) in enumerate([(1001, "10", 0), (1002, "5", 0), (1003, "8", 1), (1001, "4", 1)],
                                                 start=1):
        events.append(factories.action_event(at(days), action_id=action_id, user_id=user,
                                             institution_id=pilot.institution_id, department_id=people[user],
                                             quantity=km))
    events.append(factories.action_event(at(0), action_id=9, user_id=1003, institution_id=pilot.institution_id,
                                         department_id=office, action_type="clean_plate", variant="default",
                                         quantity="1"))
    events.append(ActionReversed(action_id=4, user_id=1001, institution_id=pilot.institution_id, reason="重复"))
    factories.to_points(databases, *events)
    return pilot


def test_stats_by_day_type_and_department(api, credited, province_token):
    day = api.get("/api/points/stats", token=province_token,
                  params={"institution_id": credited.institution_id, "from": "2030-11-19", "to": "2030-11-20"})
    assert day.status_code == 200, day.text
    body = day.json()
    assert [i["key"] for i in body["items"]] == ["2030-11-19", "2030-11-20"]
    assert (body["from"], body["to"]) == ("2030-11-19", "2030-11-20")  # the range asked, for a chart's empty days
    assert [i["actions"] for i in body["items"]] == [1, 3]  # the reversed trip counts no more
    assert body["total"]["points"] == sum(i["points"] for i in body["items"]) > 0
    by_type = api.get("/api/points/stats", token=province_token, params={"group_by": "type", "from": "2030-11-01"})
    assert {i["key"]: i["actions"] for i in by_type.json()["items"]} == {"clean_plate": 1, "commute": 3}
    by_dept = api.get("/api/points/stats", token=province_token,
                      params={"group_by": "department", "institution_id": credited.institution_id}).json()
    assert {i["label"] for i in by_dept["items"]} == {"财政厅", "办公室"}
    bad = api.get("/api/points/stats", token=province_token, params={"from": "2030-11-20", "to": "2030-11-01"})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


def test_the_monthly_csv_names_each_employee_once(api, credited, province_token):
    answer = api.get("/api/points/reports/monthly.csv", token=province_token,
                     params={"month": "2030-11", "institution_id": credited.institution_id})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert 'filename="lvbao-2030-11.csv"' in answer.headers["Content-Disposition"]
    text = answer.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["工号", "昵称", "部门", "积分", "减碳（克CO2e）", "低碳行为次数"]
    assert sorted(r[0] for r in rows[1:]) == ["E1001", "E1002", "E1003"]
    assert all(r[1].startswith("'=") for r in rows[1:])  # a nickname is never a spreadsheet formula
    points = [int(r[3]) for r in rows[1:]]
    assert points == sorted(points, reverse=True)
    empty = api.get("/api/points/reports/monthly.csv", token=province_token,
                    params={"month": "2030-10", "institution_id": credited.institution_id})
    assert empty.content.decode("utf-8").count("\n") == 1
    assert api.get("/api/points/reports/monthly.csv", token=province_token,
                   params={"month": "2030-13"}).status_code == 422


def test_an_institution_admin_sees_only_their_institution(api, credited, province_token):
    other = factories.institution(api, province_token, name="别家", code="other-r")
    token = factories.institution_admin(credited, province_token, other["id"], "other-admin", PROVINCE_PASSWORD + "x")
    assert api.get("/api/points/stats", token=token).json()["items"] == []  # their own: nothing yet
    foreign = api.get("/api/points/stats", token=token, params={"institution_id": credited.institution_id})
    assert foreign.status_code == 403 and foreign.json()["code"] == "forbidden_institution"
    csv_foreign = api.get("/api/points/reports/monthly.csv", token=token,
                          params={"month": "2030-11", "institution_id": credited.institution_id})
    assert csv_foreign.status_code == 403
