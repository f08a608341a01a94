"""Races a real client population produces: one roster entry, one refresh token, one admin password."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

pytestmark = pytest.mark.integration


def _together(n, call):
    barrier = Barrier(n)

    def run(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_ten_users_racing_for_one_invite_bind_exactly_one(api, pilot, province_token, databases):
    code = api.post(f"/api/auth/institutions/{pilot.institution_id}/invites", json={"employee_no": "E1020"},
                    token=province_token).json()["invite_code"]
    users = [pilot.wechat_login(f"o-racer-{i}") for i in range(10)]
    responses = _together(10, lambda i: api.post("/api/auth/bind", json={"invite_code": code},
                                                 token=users[i]["access_token"]))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert set(statuses) <= {200, 409, 422}
    bound = [api.get("/api/auth/me", token=u["access_token"]).json()["bound"] for u in users]
    assert bound.count(True) == 1
    with databases["gateway"].reader() as uow:
        from sqlalchemy import func, select

        from services.gateway.models import infra

        # One EmployeeBound (an outbox row per consuming service).
        assert uow.session.scalar(select(func.count(func.distinct(infra.outbox.event_id)))
                                  .where(infra.outbox.event_type == "EmployeeBound")) == 1


def test_ten_users_racing_for_one_phone_bind_exactly_one(api, pilot):
    users = [pilot.wechat_login(f"o-phone-racer-{i}") for i in range(10)]
    codes = [api.post("/mock-wechat/mock/phone-code", json={"phone": "13800000030"}).json()["code"]
             for _ in range(10)]
    responses = _together(10, lambda i: api.post("/api/auth/bind", json={"phone_code": codes[i]},
                                                 token=users[i]["access_token"]))
    assert sorted(r.status_code for r in responses).count(200) == 1, [r.text for r in responses]


def test_one_refresh_token_spent_ten_times_at_once_gives_one_pair(api, pilot):
    pair = pilot.wechat_login("o-refresh-race")
    responses = _together(10, lambda i: api.post("/api/auth/refresh",
                                                 json={"refresh_token": pair["refresh_token"]}))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1
    assert {r.json()["code"] for r in responses if r.status_code != 200} <= {"refresh_token_reused",
                                                                            "invalid_refresh_token"}
    # The losers' reuse revoked the family, so the winner's new token is dead too: a stolen token and its
    # thief cannot both keep going.
    again = api.post("/api/auth/refresh", json={"refresh_token": winners[0].json()["refresh_token"]})
    assert again.status_code == 401


def test_parallel_password_guesses_get_at_most_ten_tries(api, pilot):
    responses = _together(20, lambda i: api.post("/api/auth/admin/login",
                                                 json={"username": "admin", "password": f"guess-{i}"}))
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == 10 and statuses.count(429) == 10
