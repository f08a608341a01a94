"""The rule tables over HTTP: defaults in force, publishing versions, validation, scope checks, preview."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.points.models import Rule, infra
from services.points.rules import install_default_rules
from shared import clock
from tests import factories
from tests.conftest import PROVINCE_PASSWORD

pytestmark = pytest.mark.integration

RULES = "/api/points/rules"


@pytest.fixture
def now(pilot, frozen_clock):
    """A frozen 'now': a future moment, after a sign-in at the real time (so the signing key exists and signs)."""
    pilot.admin_login("admin", PROVINCE_PASSWORD)
    moment = (clock.now() + timedelta(days=2)).astimezone(clock.LOCAL_TZ).replace(hour=10, minute=0, second=0,
                                                                                  microsecond=0)
    frozen_clock.set(moment)
    return moment


@pytest.fixture
def province_token(now, pilot):
    """The province admin signed in at the frozen time."""
    return pilot.admin_login("admin", PROVINCE_PASSWORD)["access_token"]


@pytest.fixture
def center_admin(api, pilot, province_token):
    return factories.institution_admin(pilot, province_token, pilot.institution_id)


def clean_plate_rule(**changes) -> dict:
    rule = {
        "action_type": "clean_plate", "institution_id": None, "unit": "meal",
        "variants": {"default": {"carbon_g_per_unit": 120, "source": "本省食堂抽样称重"}},
        "g_per_point": 40, "max_quantity_per_action": 1, "daily_cap_points": 9, "daily_count_limit": 3,
        "claim_window_days": 1, "source": "省机关事务管理局 2025 年食堂称重调查",
    }
    rule.update(changes)
    return rule


def commute_variants() -> dict:
    return {m: {"carbon_g_per_unit": g} for m, g in
            {"walk": 272, "bike": 272, "bus": 200, "metro": 211, "carpool": 136, "ev": 186}.items()}


def test_the_province_defaults_are_in_force(api, now, province_token, databases):
    got = api.get(RULES, token=province_token)
    assert got.status_code == 200, got.text
    items = {r["action_type"]: r for r in got.json()["items"]}
    assert set(items) == {"commute", "clean_plate", "waste_sorting", "ev_charging"}
    commute = items["commute"]
    assert (commute["version"], commute["institution_id"], commute["unit"]) == (1, None, "km")
    assert commute["effective_from"].startswith("2019-12-31T16:00:00")  # 2020-01-01 00:00 Asia/Shanghai
    assert commute["variants"]["metro"]["carbon_g_per_unit"] == 211 and commute["variants"]["metro"]["source"]
    assert commute["max_quantity_per_action"] == 100 and commute["claim_window_days"] == 7
    assert items["ev_charging"]["variants"]["default"]["carbon_g_per_unit"] == 1243
    assert all(r["source"] for r in items.values())
    assert install_default_rules(databases["points"]) == 0  # idempotent
    with databases["points"].reader() as uow:
        published = uow.session.scalars(select(infra.outbox.message).where(
            infra.outbox.event_type == "RuleVersionPublished", infra.outbox.destination == "activities")).all()
    assert sorted(m["data"]["action_type"] for m in published) == sorted(items)


def test_admin_publishes_an_override_for_their_institution(api, now, pilot, center_admin, province_token, databases,
                                                            frozen_clock):
    inst = pilot.institution_id
    first = api.post(RULES, json=clean_plate_rule(institution_id=inst), token=center_admin)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["version"], body["institution_id"], body["g_per_point"]) == (1, inst, 40)
    assert body["effective_from"] == now.astimezone(clock.UTC).isoformat()  # "now" when left out
    assert body["variants"]["default"] == {"carbon_g_per_unit": 120, "source": "本省食堂抽样称重"}

    later = now + timedelta(days=3)
    second = api.post(RULES, json=clean_plate_rule(institution_id=inst, g_per_point=30,
                                                   effective_from=later.isoformat()), token=center_admin)
    assert second.status_code == 201 and second.json()["version"] == 2

    in_force = {r["action_type"]: r for r in api.get(RULES, token=center_admin).json()["items"]}
    assert (in_force["clean_plate"]["institution_id"], in_force["clean_plate"]["version"]) == (inst, 1)
    assert in_force["commute"]["institution_id"] is None  # no override: the default
    frozen_clock.set(later)
    center_again = pilot.admin_login("center-admin", "center-admin-pw")["access_token"]
    in_force = {r["action_type"]: r for r in api.get(RULES, token=center_again).json()["items"]}
    assert in_force["clean_plate"]["version"] == 2

    versions = api.get(f"{RULES}/clean_plate/versions", params={"institution_id": inst}, token=center_again)
    assert [v["version"] for v in versions.json()["items"]] == [2, 1]
    defaults = api.get(f"{RULES}/clean_plate/versions", token=pilot.admin_login("admin", PROVINCE_PASSWORD)[
        "access_token"])
    assert [(v["version"], v["institution_id"]) for v in defaults.json()["items"]] == [(1, None)]

    with databases["points"].reader() as uow:
        [message] = [m for m in uow.session.scalars(select(infra.outbox.message).where(
            infra.outbox.event_type == "RuleVersionPublished")) if m["data"]["institution_id"] == inst
            and m["data"]["version"] == 2]
    assert message["data"]["effective_from"] == later.astimezone(clock.UTC).isoformat()
    assert (message["data"]["max_quantity_per_action"], message["data"]["daily_count_limit"]) == ("1", 3)
    assert message["data"]["claim_window_days"] == 1 and message["data"]["unit"] == "meal"


def test_province_admin_publishes_a_new_default_version(api, now, province_token):
    rule = {"action_type": "commute", "unit": "km", "variants": commute_variants(), "g_per_point": 50,
            "max_quantity_per_action": 80.5, "effective_from": (now + timedelta(seconds=30)).isoformat(),
            "source": "2025 年省方法学"}
    made = api.post(RULES, json=rule, token=province_token)
    assert made.status_code == 201, made.text
    assert (made.json()["version"], made.json()["institution_id"]) == (2, None)
    assert made.json()["max_quantity_per_action"] == 80.5 and made.json()["claim_window_days"] == 7
    assert api.get(f"{RULES}/flying/versions", token=province_token).status_code == 404


BAD_RULES = [
    ("action_type", {"action_type": "jogging"}),
    ("unit", {"unit": "km"}),
    ("variants", {"variants": {}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 1.5}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": -3}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": "100"}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 100}, "walk": {"carbon_g_per_unit": 1}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 100, "max_quantity_per_action": 5}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 100, "colour": "green"}}}),
    ("variants", {"variants": {"default": 100}}),
    ("variants", {"variants": {"default": {"source": "没有系数"}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 100, "max_quantity_per_action": "many"}}}),
    ("variants", {"variants": {"default": {"carbon_g_per_unit": 100, "source": 42}}}),
    ("g_per_point", {"g_per_point": 0}),
    ("g_per_point", {"g_per_point": 2.5}),
    ("effective_from", {"effective_from": "2020-01-01T00:00:00+08:00"}),
    ("effective_from", {"effective_from": "2030-01-01T00:00:00"}),
    ("effective_to", {"effective_from": "2031-01-02T00:00:00+08:00", "effective_to": "2031-01-01T00:00:00+08:00"}),
    ("source", {"source": "   "}),
    ("source", {"source": ""}),
    ("daily_cap_points", {"daily_cap_points": -1}),
    ("max_quantity_per_action", {"max_quantity_per_action": 0}),
    ("max_quantity_per_action", {"max_quantity_per_action": "1e9"}),
    ("claim_window_days", {"claim_window_days": "seven"}),
    ("surprise", {"surprise": True}),
]


@pytest.mark.parametrize(("field", "changes"), BAD_RULES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_RULES)])
def test_a_bad_rule_is_refused_field_by_field(api, now, province_token, databases, field, changes):
    response = api.post(RULES, json=clean_plate_rule(**changes), token=province_token)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error" and field in body["errors"], body
    with databases["points"].reader() as uow:
        assert uow.session.scalar(select(func.count(Rule.id))) == 4  # only the defaults


def test_commute_needs_exactly_its_six_modes(api, now, province_token):
    variants = commute_variants()
    del variants["ev"]
    variants["scooter"] = {"carbon_g_per_unit": 100}
    rule = {"action_type": "commute", "unit": "km", "variants": variants, "g_per_point": 50, "source": "x"}
    response = api.post(RULES, json=rule, token=province_token)
    assert response.status_code == 422
    assert set(response.json()["errors"]["variants"]) == {"ev", "scooter"}


def test_who_may_see_and_change_which_rules(api, now, pilot, center_admin, province_token):
    employee = pilot.employee("o-rules", "13800000003")["access_token"]
    station = factories.device(api, province_token, pilot.institution_id)["token"]
    preview = {"rule": clean_plate_rule(), "action": {"quantity": 1}}
    for token in (employee, station):
        for method, path, body in (("GET", RULES, None), ("POST", RULES, clean_plate_rule()),
                                   ("GET", f"{RULES}/commute/versions", None), ("POST", f"{RULES}/preview", preview)):
            answer = api.request(method, path, json=body, token=token)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["code"] == "forbidden_role"
    assert api.get(RULES).status_code == 401

    other = pilot.institution_id + 1000
    refused = [
        api.post(RULES, json=clean_plate_rule(), token=center_admin),  # the province default
        api.post(RULES, json=clean_plate_rule(institution_id=other), token=center_admin),
        api.get(RULES, params={"institution_id": other}, token=center_admin),
        api.get(f"{RULES}/commute/versions", params={"institution_id": other}, token=center_admin),
        api.post(f"{RULES}/preview", json={**preview, "rule": clean_plate_rule(institution_id=other)},
                 token=center_admin),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(403, "forbidden_institution")] * 5
    seen = api.get(RULES, params={"institution_id": other}, token=province_token)
    assert seen.status_code == 200 and len(seen.json()["items"]) == 4  # the defaults apply there
    made = api.post(RULES, json=clean_plate_rule(institution_id=other), token=province_token)
    assert made.status_code == 201 and made.json()["institution_id"] == other


def test_preview_gives_the_receipt_and_stores_nothing(api, now, center_admin, databases):
    rule = {"action_type": "commute", "unit": "km", "variants": commute_variants(), "g_per_point": 50,
            "daily_cap_points": 100}
    answer = api.post(f"{RULES}/preview", json={"rule": rule, "action": {"variant": "bike", "quantity": "12.5",
                                                                         "earned_today_points": 40}},
                      token=center_admin)
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert {k: receipt[k] for k in ("quantity", "unit", "variant", "factor_g_per_unit", "carbon_g", "uncapped_points",
                                    "points", "g_per_point", "capped")} == {
        "quantity": "12.5", "unit": "km", "variant": "bike", "factor_g_per_unit": 272, "carbon_g": 3400,
        "uncapped_points": 68, "points": 60, "g_per_point": 50, "capped": True}
    assert "已达每日上限" in receipt["note"] and receipt["rule_id"] is None

    bad = copy.deepcopy(rule)
    bad["variants"]["walk"]["carbon_g_per_unit"] = -1
    refused = api.post(f"{RULES}/preview", json={"rule": bad, "action": {"variant": "tram", "quantity": 1}},
                       token=center_admin)
    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"rule", "action"}
    with databases["points"].reader() as uow:
        assert uow.session.scalar(select(func.count(Rule.id))) == 4


def test_version_numbers_count_per_scope(databases, clean, frozen_clock):
    from services.points.rules import RuleBook
    from shared.auth.guards import Principal

    frozen_clock.set(datetime.fromisoformat("2025-06-02T10:00:00+08:00"))
    province = Principal(subject="admin:1", token_type="access", roles=frozenset({"province_admin"}))
    versions = [RuleBook(databases["points"]).publish(province, {**clean_plate_rule(institution_id=i)})["version"]
                for i in (None, 5, 5, None, 6)]
    assert versions == [2, 1, 2, 3, 1]
