"""Commutes from the mini-program: validation, plausibility, idempotency, review."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from services.activities.models import Action, infra
from tests import factories
from tests.support import deliver_outbox

NOON = datetime(2030, 6, 4, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai

pytestmark = [pytest.mark.integration, pytest.mark.frozen_at(NOON)]


@pytest.fixture
def employee(frozen_clock, pilot, install_limits):
    return pilot.employee("o-commuter", "13800000001")


def commute(api, token, key=None, **body):
    payload = {"type": "commute", "mode": "metro", "distance_km": 10, "occurred_at": "2030-06-04T08:30:00+08:00"}
    payload.update(body)
    return api.post("/api/activities/actions", json=payload, token=token,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def _outbox_types(databases):
    with databases["activities"].reader() as uow:
        return [r.event_type for r in uow.session.scalars(select(infra.outbox).order_by(infra.outbox.id))]


def test_an_accepted_commute_is_handed_to_points(api, employee, databases):
    response = commute(api, employee["access_token"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["type"] == "commute" and body["mode"] == "metro"
    assert body["quantity"] == "10" and body["unit"] == "km"
    assert body["occurred_at"].startswith("2030-06-04T00:30:00")
    assert _outbox_types(databases) == ["ActionRecorded"]
    with databases["activities"].reader() as uow:
        message = uow.session.scalars(select(infra.outbox.message)).one()
    assert message["data"]["quantity"] == "10" and message["data"]["action_type"] == "commute"
    assert message["data"]["user_id"] == employee["user"]["id"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"mode": "rocket"}, "validation_error", "mode"),
        ({"distance_km": -1}, "validation_error", "distance_km"),
        ({"distance_km": 0}, "validation_error", "distance_km"),
        ({"distance_km": "ten"}, "validation_error", "distance_km"),
        ({"occurred_at": "2030-06-04 08:30"}, "validation_error", "occurred_at"),
        ({"occurred_at": "2030-06-04T08:30:00"}, "validation_error", "occurred_at"),  # no offset
        ({"occurred_at": "2030-06-04T12:30:00+08:00"}, "occurred_in_future", "occurred_at"),
        ({"occurred_at": "2030-05-21T08:30:00+08:00"}, "action_too_old", "occurred_at"),
        ({"extra": 1}, "validation_error", "extra"),
    ],
)
def test_invalid_commutes_are_refused_and_change_nothing(api, employee, databases, body, code, field):
    response = commute(api, employee["access_token"], **body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == code and field in error["errors"], error
    with databases["activities"].reader() as uow:
        assert uow.session.scalar(select(func.count(Action.id))) == 0
    assert _outbox_types(databases) == []


def test_idempotency_key_replays_and_refuses_a_different_body(api, employee, databases):
    first = commute(api, employee["access_token"], key="trip-1")
    again = commute(api, employee["access_token"], key="trip-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = commute(api, employee["access_token"], key="trip-1", distance_km=11)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    missing = api.post("/api/activities/actions", token=employee["access_token"],
                       json={"type": "commute", "mode": "bus", "distance_km": 3,
                             "occurred_at": "2030-06-04T08:30:00+08:00"})
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_required"
    with databases["activities"].reader() as uow:
        assert uow.session.scalar(select(func.count(Action.id))) == 1
    assert _outbox_types(databases) == ["ActionRecorded"]


def test_implausible_commutes_wait_for_review(api, employee, databases):
    token = employee["access_token"]
    too_far = commute(api, token, mode="walk", distance_km=30, occurred_at="2030-06-03T08:00:00+08:00")
    assert too_far.json()["status"] == "pending_review" and too_far.json()["reason"] == "distance_implausible"
    # Four trips a day are fine; the fifth is not.
    times = ["07:00", "09:00", "11:00", "11:40"]
    statuses = [commute(api, token, mode="bus", distance_km=5, occurred_at=f"2030-06-04T{t}:00+08:00").json()
                for t in times]
    assert [s["status"] for s in statuses] == ["accepted"] * 4
    fifth = commute(api, token, mode="bus", distance_km=5, occurred_at="2030-06-04T10:00:00+08:00")
    assert fifth.json()["reason"] == "too_many_trips"
    # A 20 km metro ride ending 10 minutes after a bus ride ended cannot have happened.
    overlapping = commute(api, token, mode="metro", distance_km=20, occurred_at="2030-06-02T08:10:00+08:00")
    assert overlapping.json()["status"] == "accepted"
    clash = commute(api, token, mode="bike", distance_km=5, occurred_at="2030-06-02T08:05:00+08:00")
    assert clash.json()["status"] == "pending_review" and clash.json()["reason"] == "overlapping_trip"
    assert _outbox_types(databases).count("ActionRecorded") == 5


def test_the_day_of_a_trip_is_the_local_day(api, employee):
    token = employee["access_token"]
    # 23:30 and 00:30 local time are different days, although both are 15:30/16:30 UTC of one UTC day.
    for t in ["2030-06-02T20:00:00+08:00", "2030-06-02T21:00:00+08:00", "2030-06-02T22:00:00+08:00",
              "2030-06-02T23:30:00+08:00"]:
        assert commute(api, token, mode="bus", distance_km=2, occurred_at=t).json()["status"] == "accepted"
    after_midnight = commute(api, token, mode="bus", distance_km=2, occurred_at="2030-06-03T00:30:00+08:00")
    assert after_midnight.json()["status"] == "accepted"


def test_who_may_record(api, frozen_clock, pilot, install_limits, province_token):
    unbound = pilot.wechat_login("o-unbound")["access_token"]
    refused = commute(api, unbound)
    assert refused.status_code == 403 and refused.json()["code"] == "not_bound"
    assert commute(api, province_token).status_code == 403
    assert commute(api, None).status_code == 401


def test_my_actions_newest_first_with_cursor(api, employee):
    token = employee["access_token"]
    for hour in ("07", "08", "09"):
        commute(api, token, mode="bike", distance_km=3, occurred_at=f"2030-06-03T{hour}:00:00+08:00")
    page = api.get("/api/activities/actions?mine&limit=2", token=token).json()
    assert [a["occurred_at"][11:13] for a in page["items"]] == ["01", "00"]
    rest = api.get(f"/api/activities/actions?mine&limit=2&cursor={page['next_cursor']}", token=token).json()
    assert [a["occurred_at"][11:13] for a in rest["items"]] == ["23"] and rest["next_cursor"] is None


def test_review_approve_credits_and_reject_reverses(api, employee, province_token, databases):
    token = employee["access_token"]
    flagged = commute(api, token, mode="walk", distance_km=30, occurred_at="2030-06-03T08:00:00+08:00").json()
    accepted = commute(api, token, mode="bus", distance_km=5).json()
    queue = api.get("/api/activities/reviews", token=province_token)
    assert queue.status_code == 422  # a province admin names the institution
    queue = api.get(f"/api/activities/reviews?institution_id={employee['user']['institution_id']}",
                    token=province_token).json()
    assert [a["id"] for a in queue["items"]] == [flagged["id"]]
    assert queue["items"][0]["reason"] == "distance_implausible"

    approved = api.post(f"/api/activities/reviews/{flagged['id']}/approve", json={"note": "走路上班，属实"},
                        token=province_token)
    assert approved.status_code == 200 and approved.json()["status"] == "accepted"
    again = api.post(f"/api/activities/reviews/{flagged['id']}/approve", json={}, token=province_token)
    assert again.status_code == 409 and again.json()["code"] == "review_not_pending"

    rejected = api.post(f"/api/activities/reviews/{accepted['id']}/reject", json={"note": "重复申报"},
                        token=province_token)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert _outbox_types(databases) == ["ActionRecorded", "ActionRecorded", "ActionReversed"]
    assert api.post(f"/api/activities/reviews/{accepted['id']}/reject", json={},
                    token=province_token).json()["code"] == "review_not_pending"
    assert api.post("/api/activities/reviews/999999/approve", json={}, token=province_token).status_code == 404
    assert api.post(f"/api/activities/reviews/{flagged['id']}/reject", json={}, token=token).status_code == 403


def test_an_institution_admin_reviews_only_their_own(api, employee, pilot, province_token):
    other = factories.institution(api, province_token, name="南昌市某局", code="nc-x")
    other_admin = factories.institution_admin(pilot, province_token, other["id"], "nc-admin", "long-enough-pw")
    flagged = commute(api, employee["access_token"], mode="walk", distance_km=30).json()
    assert api.get(f"/api/activities/reviews?institution_id={pilot.institution_id}",
                   token=other_admin).status_code == 403
    refused = api.post(f"/api/activities/reviews/{flagged['id']}/approve", json={}, token=other_admin)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden_institution"
    assert api.get("/api/activities/reviews", token=other_admin).json()["items"] == []


def test_rule_limits_follow_published_rule_versions(api, employee, databases):
    """A stricter institution override (published by points) applies from its effective_from on."""
    factories.to_activities(databases, factories.rule_version_event(
        "commute", rule_id=5001, institution_id=employee["user"]["institution_id"], version=1,
        effective_from="2030-06-04T00:00:00+08:00", effective_to=None, unit="km",
        variants={"bus": {"carbon_g_per_unit": 200, "max_quantity_per_action": 3}}, max_quantity_per_action="50",
        daily_count_limit=None, claim_window_days=3,
    ))
    token = employee["access_token"]
    assert commute(api, token, mode="bus", distance_km=5).json()["reason"] == "distance_implausible"
    before = commute(api, token, mode="bus", distance_km=5, occurred_at="2030-06-03T08:00:00+08:00").json()
    assert before["status"] == "accepted"  # the province default was in force then
    old = commute(api, token, mode="bus", distance_km=2, occurred_at="2030-05-31T08:00:00+08:00")
    assert old.status_code == 201  # the default's 7-day window applies to a trip before the override
    assert deliver_outbox(databases, "activities") == {"points": 2}
