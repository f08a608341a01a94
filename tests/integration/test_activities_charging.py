"""Charging sessions from the operator API: HMAC signatures, timestamps, replays, unique sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.activities.models import Action
from shared import clock
from tests import factories
from tests.support import deliver_outbox, signed_headers

NOW = datetime(2030, 6, 4, 10, 0, tzinfo=UTC)
PATH = "/api/activities/charging-sessions"

pytestmark = [pytest.mark.integration, pytest.mark.frozen_at(NOW)]  # before any token is issued


@pytest.fixture
def operator(api, pilot, province_token, install_limits, databases):
    made = factories.device(api, province_token, pilot.institution_id, kind="operator", name="国网充电")
    employee = pilot.employee("o-driver", "13800000006")
    deliver_outbox(databases, "gateway")  # activities learns who employee E1007 (phone ...0006) is
    return {**made, "employee": employee}


def session(**changes):
    body = {"session_id": "S-1", "employee_no": "E1007", "charger_id": "C-7", "kwh": 20.5,
            "started_at": "2030-06-04T16:00:00+08:00", "ended_at": "2030-06-04T17:30:00+08:00"}
    body.update(changes)
    return body


def send(api, operator, body, **sign):
    headers, raw = signed_headers(operator["key_id"], operator["secret"], body, **sign)
    return api.post(PATH, data=raw, headers=headers)


def _count(databases):
    with databases["activities"].reader() as uow:
        return uow.session.scalar(select(func.count(Action.id)))


def test_a_signed_session_is_recorded_for_the_employee(api, operator, databases):
    response = send(api, operator, session())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == "ev_charging" and body["status"] == "accepted" and body["quantity"] == "20.5"
    assert body["unit"] == "kwh" and body["occurred_at"].startswith("2030-06-04T09:30:00")
    with databases["activities"].reader() as uow:
        action = uow.session.scalars(select(Action)).one()
    assert action.user_id == operator["employee"]["user"]["id"]


def test_bad_stale_and_replayed_requests_are_refused(api, operator, databases):
    headers, raw = signed_headers(operator["key_id"], operator["secret"], session())
    forged = api.post(PATH, data=raw.replace(b"20.5", b"99.5"), headers=headers)
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_signature"
    wrong_key = send(api, {**operator, "secret": "0" * 64}, session())
    assert wrong_key.status_code == 401
    stale = send(api, operator, session(), timestamp=int(NOW.timestamp()) - 301)
    assert stale.status_code == 401 and stale.json()["code"] == "stale_timestamp"
    future = send(api, operator, session(), timestamp=int(NOW.timestamp()) + 301)
    assert future.status_code == 401
    assert api.post(PATH, data=raw, headers={"Content-Type": "application/json"}).status_code == 401
    assert _count(databases) == 0

    assert api.post(PATH, data=raw, headers=headers).status_code == 201
    replayed = api.post(PATH, data=raw, headers=headers)
    assert replayed.status_code == 409 and replayed.json()["code"] == "request_replayed"
    clock.advance(timedelta(seconds=2))
    again = send(api, operator, session())  # the operator's retry: a new signature, the same session
    assert again.status_code == 409 and again.json()["code"] == "session_already_recorded"
    assert _count(databases) == 1


def test_unknown_employees_and_invalid_sessions(api, operator, databases):
    unknown = send(api, operator, session(employee_no="E9999"))
    assert unknown.status_code == 422 and unknown.json()["code"] == "employee_unknown"
    backwards = send(api, operator, session(session_id="S-2", ended_at="2030-06-04T15:00:00+08:00"))
    assert backwards.status_code == 422 and "ended_at" in backwards.json()["errors"]
    nobody = send(api, operator, session(session_id="S-3", employee_no=None))
    assert nobody.status_code == 422
    assert send(api, operator, {"session_id": "S-4"}).status_code == 422
    not_json = send(api, operator, b"{not json")
    assert not_json.status_code == 400
    assert _count(databases) == 0


def test_implausible_sessions_wait_for_review(api, operator):
    huge = send(api, operator, session(session_id="S-5", kwh=150)).json()
    assert huge["status"] == "pending_review" and huge["reason"] == "kwh_implausible"
    fast = send(api, operator, session(session_id="S-6", kwh=90, started_at="2030-06-04T17:20:00+08:00")).json()
    assert fast["status"] == "pending_review" and fast["reason"] == "charging_rate_implausible"


def test_a_revoked_operator_is_refused(api, operator, province_token):
    assert api.delete(f"/api/auth/devices/{operator['id']}", token=province_token).status_code == 204
    refused = send(api, operator, session())
    assert refused.status_code == 401 and refused.json()["code"] == "device_revoked"


def test_operators_sign_only_for_their_institution(api, operator, pilot, province_token, databases):
    other = factories.institution(api, province_token, name="抚州市某局", code="fz-y")
    foreign = factories.device(api, province_token, other["id"], kind="operator", name="别家")
    # Employee E1007 belongs to the pilot institution: the other institution's operator cannot credit them.
    refused = send(api, foreign, session(session_id="S-9"))
    assert refused.status_code == 422 and refused.json()["code"] == "employee_unknown"
    assert json.loads(send(api, operator, session(session_id="S-9")).text)["status"] == "accepted"


def test_headers_outside_ascii_are_refused_not_crashed_on(api, operator):
    headers, raw = signed_headers(operator["key_id"], operator["secret"], session())
    for name, value in (("X-Lvbao-Timestamp", "\u00b2\u00b2"), ("X-Lvbao-Signature", "\u00e9" * 64),
                        ("X-Lvbao-Key", "op.\u00b2.1.abc")):
        refused = api.post(PATH, data=raw, headers={**headers, name: value.encode("utf-8")})
        assert refused.status_code == 401, (name, refused.text)


def test_one_session_reported_many_times_at_once_is_recorded_once(api, operator, databases, live_server):
    import threading

    import requests

    barrier, statuses = threading.Barrier(6), []

    def report(i):
        stamp = int(NOW.timestamp()) - i  # a different signature each time: not a replay, the same session
        headers, raw = signed_headers(operator["key_id"], operator["secret"], session(), timestamp=stamp)
        barrier.wait()
        statuses.append(requests.post(live_server + PATH, data=raw, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=report, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 5
    assert _count(databases) == 1
