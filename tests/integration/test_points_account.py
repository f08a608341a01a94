"""The employee's points over HTTP: /me with today's and this week's totals, and the ledger, newest first."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.points.handlers import HANDLERS
from services.points.models import infra
from shared import clock
from shared.consumer import consume
from shared.events import ActionReversed
from shared.paging import encode_cursor
from tests import factories
from tests.conftest import PROVINCE_PASSWORD

pytestmark = pytest.mark.integration

ME = "/api/points/me"


@pytest.fixture
def wednesday(pilot, frozen_clock):
    """Freeze the clock at a Wednesday 10:00 in Shanghai, a few days ahead (after a sign-in at the real time, so
    the signing key already exists and signs then)."""
    day = clock.local_now().date() + timedelta(days=1)
    day += timedelta(days=(2 - day.weekday()) % 7)
    moment = datetime(day.year, day.month, day.day, 10, tzinfo=clock.LOCAL_TZ)
    pilot.admin_login("admin", PROVINCE_PASSWORD)
    frozen_clock.set(moment)
    return moment


def credit(databases, user_id: int, institution_id: int, action_id: int, at: datetime, quantity: str = "10"):
    factories.credit(databases, at, action_id=action_id, user_id=user_id, institution_id=institution_id,
                     quantity=quantity)


def test_a_new_or_unbound_user_has_zeros(api, pilot, wednesday):
    zeros = {"balance": 0, "lifetime_points": 0, "carbon_g": 0, "today": {"points": 0, "carbon_g": 0},
             "week": {"points": 0, "carbon_g": 0}}
    unbound = pilot.wechat_login("o-unbound")["access_token"]
    assert api.get(ME, token=unbound).json() == zeros
    assert api.get(f"{ME}/ledger", token=unbound).json() == {"items": [], "next_cursor": None}
    bound = pilot.employee("o-new", "13800000011")["access_token"]
    assert api.get(ME, token=bound).json() == zeros


def test_me_sums_today_and_the_week_in_shanghai_time(api, pilot, databases, wednesday):
    pair = pilot.employee("o-me", "13800000012")
    user, inst = pair["user"]["id"], pilot.institution_id
    monday = (wednesday - timedelta(days=2)).replace(hour=0)
    credit(databases, user, inst, 1, wednesday - timedelta(hours=2))                        # today, 42 points
    credit(databases, user, inst, 2, monday + timedelta(minutes=10))                        # Monday 00:10, 42
    credit(databases, user, inst, 3, monday - timedelta(minutes=20), quantity="5")          # Sunday 23:40, 21
    consume("points", databases["points"], infra, HANDLERS, [ActionReversed(
        action_id=2, user_id=user, institution_id=inst, reason="重复申报").to_message()])
    credit(databases, user, inst, 4, wednesday - timedelta(days=1), quantity="20")          # Tuesday, 84

    me = api.get(ME, token=pair["access_token"])
    assert me.status_code == 200, me.text
    assert me.json() == {
        "balance": 42 + 21 + 84, "lifetime_points": 42 + 21 + 84, "carbon_g": 2110 + 1055 + 4220,
        "today": {"points": 42, "carbon_g": 2110},
        "week": {"points": 42 + 84, "carbon_g": 2110 + 4220},  # Monday's was reversed; Sunday is last week
    }


def test_the_ledger_pages_newest_first_with_receipts(api, pilot, databases, wednesday):
    pair = pilot.employee("o-ledger", "13800000013")
    user = pair["user"]["id"]
    for action_id in (11, 12, 13):
        credit(databases, user, pilot.institution_id, action_id, wednesday - timedelta(hours=action_id - 10))
    consume("points", databases["points"], infra, HANDLERS, [ActionReversed(
        action_id=12, user_id=user, institution_id=pilot.institution_id, reason="行程重复").to_message()])
    credit(databases, 999, pilot.institution_id, 99, wednesday)  # someone else's

    first = api.get(f"{ME}/ledger", params={"limit": 3}, token=pair["access_token"]).json()
    assert [(i["kind"], i["source"]) for i in first["items"]] == [
        ("reversal", {"type": "action", "id": "12"}), ("award", {"type": "action", "id": "13"}),
        ("award", {"type": "action", "id": "12"})]
    reversal, award = first["items"][0], first["items"][1]
    assert (reversal["points"], reversal["carbon_g"], reversal["balance_after"]) == (-42, -2110, 84)
    assert reversal["receipt"]["reason"] == "行程重复" and reversal["receipt"]["shortfall"] == 0
    assert {"rule_id", "rule_version", "quantity", "unit", "factor_g_per_unit", "carbon_g", "points"} <= set(
        award["receipt"])
    assert award["created_at"].endswith("+00:00")
    rest = api.get(f"{ME}/ledger", params={"limit": 3, "cursor": first["next_cursor"]}, token=pair["access_token"])
    assert [i["source"]["id"] for i in rest.json()["items"]] == ["11"] and rest.json()["next_cursor"] is None
    bad = api.get(f"{ME}/ledger", params={"cursor": "bm90LWpzb24"}, token=pair["access_token"])
    assert bad.status_code == 422
    not_an_id = api.get(f"{ME}/ledger", params={"cursor": encode_cursor({"after": "x"})}, token=pair["access_token"])
    assert not_an_id.status_code == 422 and "cursor" in not_an_id.json()["errors"]


def test_only_employees_have_points_pages(api, pilot, wednesday):
    province_token = pilot.admin_login("admin", PROVINCE_PASSWORD)["access_token"]
    station = factories.device(api, province_token, pilot.institution_id)["token"]
    for path in (ME, f"{ME}/ledger"):
        assert api.get(path).status_code == 401
        for token in (station, province_token):
            refused = api.get(path, token=token)
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden_role", refused.text
