"""Rewards and redemption: the catalog and its stock, the saga with points under concurrency, pickup codes,
cancellation and expiry — each scenario judged by the API and by `lvbao verify`'s reconciliation."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from lvbao.seed import demo_roster_csv
from lvbao.verify import Report
from lvbao.verify_rewards import reconcile_redemptions
from services.points.models import Account, LedgerEntry
from services.points.models import infra as points_infra
from services.rewards.models import Redemption
from services.rewards.models import infra as rewards_infra
from services.rewards.saga import Deadlines
from shared import clock
from shared.consumer import consume
from tests import factories
from tests.support import deliver_outbox

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(pilot, province_token, databases):
    """The pilot with a 60-person roster (so 50 different people can queue at once)."""
    imported = pilot.api.post(f"/api/auth/institutions/{pilot.institution_id}/roster", token=province_token,
                              data=demo_roster_csv(60), headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200, imported.text
    return pilot


def employees(pilot, databases, count: int) -> list[dict]:
    people = []
    for i in range(count):
        pair = pilot.employee(f"o-shop-{i}", f"1380000{i:04d}")
        people.append({"token": pair["access_token"], "user_id": pair["user"]["id"]})
    deliver_outbox(databases)
    return people


def grant(databases, user_id: int, institution_id: int, points: int) -> None:
    """Give a user points as an admin adjustment would (the tests' starting balances)."""
    factories.ledger_entry(databases, user_id, points, institution_id=institution_id)


def add_reward(api, token, institution_id, **fields) -> dict:
    body = {"institution_id": institution_id, "name": "环保水杯", "description": "不锈钢", "points_cost": 10,
            "stock": 10, **fields}
    created = api.post("/api/rewards/catalog", json=body, token=token)
    assert created.status_code == 201, created.text
    return created.json()


def redeem(api, token, reward_id, key=None):
    return api.post("/api/rewards/redemptions", json={"reward_id": reward_id}, token=token,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def balance(databases, user_id) -> int:
    with databases["points"].reader() as uow:
        account = uow.session.get(Account, user_id)
        return account.balance if account else 0


def verified(databases) -> Report:
    report = reconcile_redemptions(databases["rewards"], databases["points"], Report())
    assert report.mismatches == [] and report.in_flight == [], report.lines()
    return report


def statuses(databases) -> dict[tuple[str, str | None], int]:
    with databases["rewards"].reader() as uow:
        rows = uow.session.execute(
            select(Redemption.status, Redemption.reason, func.count()).group_by(Redemption.status, Redemption.reason))
        return {(status, reason): n for status, reason, n in rows}


@pytest.fixture
def people(shop, databases):
    return employees(shop, databases, 50)


def test_fifty_people_racing_for_ten_in_stock(shop, people, province_token, databases):
    for person in people:
        grant(databases, person["user_id"], shop.institution_id, 100)
    reward = add_reward(shop.api, province_token, shop.institution_id, stock=10)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda p: redeem(shop.api, p["token"], reward["id"]), people))
    assert sorted({a.status_code for a in answers}) == [202], [a.text for a in answers if a.status_code != 202]
    deliver_outbox(databases)
    assert statuses(databases) == {("confirmed", None): 10, ("rejected", "out_of_stock"): 40}
    assert shop.api.get(f"/api/rewards/catalog/{reward['id']}", token=province_token).json()["stock"] == 0
    assert sum(balance(databases, p["user_id"]) for p in people) == 50 * 100 - 10 * 10
    assert verified(databases).redemptions == 50


def _consume_concurrently(databases, service: str, infra) -> None:
    """Apply every waiting message for ``service`` at once from many threads (as several workers would)."""
    with databases[infra.outbox.__table__.schema].reader() as uow:
        messages = list(uow.session.scalars(
            select(infra.outbox.message).where(infra.outbox.destination == service,
                                               infra.outbox.published_at.is_(None))))
    from lvbao import registry

    handlers = registry.module(service, "handlers").HANDLERS
    with ThreadPoolExecutor(len(messages) or 1) as pool:
        list(pool.map(lambda m: consume(service, databases[service], registry.infra(service), handlers, [m]),
                      messages))


def test_one_person_with_100_points_sends_30_redemptions_of_10(shop, province_token, databases):
    [person] = employees(shop, databases, 1)
    grant(databases, person["user_id"], shop.institution_id, 100)
    reward = add_reward(shop.api, province_token, shop.institution_id, stock=100)
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: redeem(shop.api, person["token"], reward["id"]), range(30)))
    assert {a.status_code for a in answers} == {202}
    assert {a.json()["status"] for a in answers} == {"pending"}
    _consume_concurrently(databases, "points", rewards_infra)  # 30 debit requests at once
    deliver_outbox(databases)
    assert statuses(databases) == {("confirmed", None): 10, ("rejected", "insufficient_points"): 20}
    assert balance(databases, person["user_id"]) == 0
    with databases["points"].reader() as uow:
        lowest = uow.session.scalar(select(func.min(LedgerEntry.balance_after)))
    assert lowest == 0  # never below zero on the way
    assert shop.api.get(f"/api/rewards/catalog/{reward['id']}", token=province_token).json()["stock"] == 90
    verified(databases)


def test_the_per_user_limit_holds_under_the_same_attack(shop, province_token, databases):
    [person] = employees(shop, databases, 1)
    grant(databases, person["user_id"], shop.institution_id, 1000)
    reward = add_reward(shop.api, province_token, shop.institution_id, stock=100, per_user_limit=3)
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: redeem(shop.api, person["token"], reward["id"]), range(30)))
    assert {a.status_code for a in answers} == {202}
    deliver_outbox(databases)
    assert statuses(databases) == {("confirmed", None): 3, ("rejected", "limit_reached"): 27}
    assert balance(databases, person["user_id"]) == 1000 - 30
    # A cancelled one frees its place for another.
    confirmed = [a.json()["id"] for a in answers if a.json()["status"] == "pending"]
    assert shop.api.post(f"/api/rewards/redemptions/{confirmed[0]}/cancel", token=person["token"]).status_code == 200
    assert redeem(shop.api, person["token"], reward["id"]).json()["status"] == "pending"
    assert redeem(shop.api, person["token"], reward["id"]).json()["reason"] == "limit_reached"
    deliver_outbox(databases)
    verified(databases)


def test_one_idempotency_key_sent_20_times_at_once_makes_one_redemption(shop, province_token, databases):
    [person] = employees(shop, databases, 1)
    grant(databases, person["user_id"], shop.institution_id, 100)
    reward = add_reward(shop.api, province_token, shop.institution_id)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: redeem(shop.api, person["token"], reward["id"], key="tap-1"), range(20)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(statuses(databases).values()) == 1
    different = shop.api.post("/api/rewards/redemptions", json={"reward_id": reward["id"] + 1000},
                              token=person["token"], headers={"Idempotency-Key": "tap-1"})
    assert different.status_code == 422 and different.json()["code"] == "idempotency_key_reused"
    deliver_outbox(databases)
    assert balance(databases, person["user_id"]) == 90


def _confirmed(shop, databases, points=100, **reward_fields):
    [person] = employees(shop, databases, 1)
    grant(databases, person["user_id"], shop.institution_id, points)
    token = shop.admin_login("admin", "province-admin-pw-1")["access_token"]
    reward = add_reward(shop.api, token, shop.institution_id, **reward_fields)
    redemption_id = redeem(shop.api, person["token"], reward["id"]).json()["id"]
    deliver_outbox(databases)
    shown = shop.api.get(f"/api/rewards/redemptions/{redemption_id}", token=person["token"]).json()
    assert shown["status"] == "confirmed" and shown["pickup_code"].startswith("P.")
    return person, reward, shown, token


def test_a_pickup_code_works_once(shop, databases):
    person, _reward, shown, admin_token = _confirmed(shop, databases)
    svg = shop.api.get(shown["pickup_qr_url"], token=person["token"])
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    png = shop.api.get(f"/api/rewards/redemptions/{shown['id']}/pickup.png", token=person["token"])
    assert png.content.startswith(b"\x89PNG")
    forged = shown["pickup_code"][:-1] + ("A" if shown["pickup_code"][-1] != "A" else "B")
    refused = shop.api.post("/api/rewards/fulfilments", json={"pickup_code": forged}, token=admin_token)
    assert refused.status_code == 400 and refused.json()["code"] == "pickup_code_invalid"
    first = shop.api.post("/api/rewards/fulfilments", json={"pickup_code": shown["pickup_code"]}, token=admin_token)
    assert first.status_code == 200 and first.json()["status"] == "fulfilled"
    again = shop.api.post("/api/rewards/fulfilments", json={"pickup_code": shown["pickup_code"]}, token=admin_token)
    assert again.status_code == 409 and again.json()["code"] == "pickup_code_used"
    # A fulfilled redemption cannot be cancelled, and its employee cannot fulfil it themselves.
    assert shop.api.post(f"/api/rewards/redemptions/{shown['id']}/cancel",
                         token=person["token"]).json()["code"] == "redemption_not_cancellable"
    assert shop.api.post("/api/rewards/fulfilments", json={"pickup_code": shown["pickup_code"]},
                         token=person["token"]).status_code == 403
    verified(databases)


def test_a_cancelled_redemption_gets_its_points_back_exactly_once(shop, databases):
    person, reward, shown, _ = _confirmed(shop, databases)
    assert balance(databases, person["user_id"]) == 90
    cancelled = shop.api.post(f"/api/rewards/redemptions/{shown['id']}/cancel", token=person["token"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["pickup_code"] is None
    # The refund request delivered three times (a relay that crashed before marking it), plus a retried cancel.
    with databases["rewards"].reader() as uow:
        [message] = uow.session.scalars(select(rewards_infra.outbox.message).where(
            rewards_infra.outbox.event_type == "RefundRequested"))
    from services.points.handlers import HANDLERS

    for _ in range(2):
        consume("points", databases["points"], points_infra, HANDLERS, [{**message, "event_id": uuid.uuid4().hex}])
    assert shop.api.post(f"/api/rewards/redemptions/{shown['id']}/cancel", token=person["token"]).status_code == 200
    deliver_outbox(databases)
    assert balance(databases, person["user_id"]) == 100
    with databases["points"].reader() as uow:
        kinds = uow.session.scalars(select(LedgerEntry.kind).where(LedgerEntry.source_type == "redemption")).all()
    assert sorted(kinds) == ["debit", "refund"]
    after = shop.api.get(f"/api/rewards/redemptions/{shown['id']}", token=person["token"]).json()
    assert after["refunded_at"] is not None
    assert shop.api.get(f"/api/rewards/catalog/{reward['id']}", token=person["token"]).json()["stock"] == 10
    verified(databases)


def test_an_uncollected_pickup_expires_with_a_refund(shop, databases, settings, frozen_clock):
    person, _reward, shown, _ = _confirmed(shop, databases)
    service = Deadlines(databases["rewards"], settings)
    assert service.expire_pickups() == 0
    frozen_clock.set(clock.now() + timedelta(days=settings.pickup_days, minutes=1), signing_key=True)
    admin_token = shop.admin_login("admin", "province-admin-pw-1")["access_token"]
    late = shop.api.post("/api/rewards/fulfilments", json={"pickup_code": shown["pickup_code"]}, token=admin_token)
    assert late.status_code == 410 and late.json()["code"] == "pickup_expired"
    assert service.expire_pickups() == 1
    deliver_outbox(databases)
    with databases["rewards"].reader() as uow:
        assert uow.session.get(Redemption, shown["id"]).status == "expired"
    assert balance(databases, person["user_id"]) == 100
    verified(databases)


def test_a_redemption_whose_request_was_lost_is_asked_about_again(shop, databases, settings, frozen_clock):
    [person] = employees(shop, databases, 1)
    grant(databases, person["user_id"], shop.institution_id, 100)
    token = shop.admin_login("admin", "province-admin-pw-1")["access_token"]
    reward = add_reward(shop.api, token, shop.institution_id)
    redemption_id = redeem(shop.api, person["token"], reward["id"]).json()["id"]
    with databases["rewards"].uow() as uow:  # the request vanished (as if its queue lost it, acknowledged)
        for row in uow.session.scalars(select(rewards_infra.outbox)):
            row.published_at = row.acked_at = clock.now()
        uow.commit()
    service = Deadlines(databases["rewards"], settings)
    assert service.ask_again() == 0  # not yet: it has not waited long enough
    frozen_clock.set(clock.now() + timedelta(seconds=settings.debit_retry_seconds + 1), signing_key=True)
    assert service.ask_again() == 1
    deliver_outbox(databases)
    with databases["rewards"].reader() as uow:
        assert uow.session.get(Redemption, redemption_id).status == "confirmed"
    # Asked a third time after it was decided: points repeats its decision, nothing is debited twice. The
    # third request waits twice as long as the second.
    with databases["rewards"].uow() as uow:
        redemption = uow.session.get(Redemption, redemption_id)
        redemption.status = "pending"
        uow.commit()
    frozen_clock.set(clock.now() + timedelta(seconds=settings.debit_retry_seconds + 1), signing_key=True)
    assert service.ask_again() == 0
    frozen_clock.set(clock.now() + timedelta(seconds=settings.debit_retry_seconds), signing_key=True)
    assert service.ask_again() == 1
    deliver_outbox(databases)
    assert balance(databases, person["user_id"]) == 90
    verified(databases)


def test_verify_names_lost_stock_and_points(shop, databases):
    person, reward, shown, _ = _confirmed(shop, databases)
    # a refund nobody asked for
    factories.ledger_entry(databases, person["user_id"], 10, institution_id=shop.institution_id, kind="refund",
                           source_type="redemption", source_id=str(shown["id"]), receipt={})
    with databases["rewards"].uow() as uow:
        from services.rewards.models import Reward

        uow.session.get(Reward, reward["id"]).stock += 1
        uow.commit()
    report = reconcile_redemptions(databases["rewards"], databases["points"], Report())
    text = "\n".join(report.mismatches)
    assert f"redemption {shown['id']}: confirmed, cost 10, but points holds 0" in text
    assert f"reward {reward['id']}: stock 10 + 1 held by redemptions != 10 received" in text
    assert report.exit_code == 1


def test_catalog_admin_and_stock_history(shop, province_token, databases):
    reward = add_reward(shop.api, province_token, shop.institution_id, stock=5)
    bad = shop.api.post("/api/rewards/catalog", json={"institution_id": shop.institution_id, "name": "",
                                                       "points_cost": 0, "stock": -1}, token=province_token)
    assert bad.status_code == 422 and {"name", "points_cost", "stock"} <= set(bad.json()["errors"])
    received = shop.api.post(f"/api/rewards/catalog/{reward['id']}/stock", json={"delta": 20, "reason": "到货"},
                             token=province_token)
    assert received.json()["stock"] == 25 and received.json()["stock_received"] == 25
    too_many = shop.api.post(f"/api/rewards/catalog/{reward['id']}/stock", json={"delta": -26, "reason": "盘点"},
                             token=province_token)
    assert too_many.status_code == 409 and too_many.json()["code"] == "stock_insufficient"
    history = shop.api.get(f"/api/rewards/catalog/{reward['id']}/stock", token=province_token).json()["items"]
    assert [(m["kind"], m["delta"], m["reason"]) for m in history] == [("received", 20, "到货"),
                                                                        ("received", 5, "初始库存")]
    assert all(m["actor"] for m in history)
    off = shop.api.request("PATCH", f"/api/rewards/catalog/{reward['id']}", json={"active": False},
                           token=province_token)
    assert off.status_code == 200 and off.json()["available"] is False
    [person] = employees(shop, databases, 1)
    assert shop.api.get("/api/rewards/catalog", token=person["token"]).json()["items"] == []
    refused = redeem(shop.api, person["token"], reward["id"])
    assert refused.status_code == 404 and refused.json()["code"] == "reward_not_found"
    # An employee cannot administer the catalog.
    assert shop.api.post("/api/rewards/catalog", json={}, token=person["token"]).status_code == 403


def test_admins_list_and_export_redemptions_of_their_institution_only(shop, databases, province_token):
    _person, _reward, shown, _ = _confirmed(shop, databases)
    assert shop.api.get("/api/rewards/redemptions", token=province_token).json()["errors"] == {
        "institution_id": ["缺少必填字段"]}  # the province admin names the institution
    listed = shop.api.get(f"/api/rewards/redemptions?status=confirmed&institution_id={shop.institution_id}",
                          token=province_token).json()["items"]
    assert [r["id"] for r in listed] == [shown["id"]] and listed[0]["pickup_code"] is None
    other = factories.institution(shop.api, province_token, name="南昌市某局", code="NC-01")["id"]
    nc_token = factories.institution_admin(shop, province_token, other, "nc-admin", "nc-admin-password-1")
    assert shop.api.get(f"/api/rewards/redemptions?institution_id={shop.institution_id}",
                        token=nc_token).status_code == 403
    assert shop.api.get("/api/rewards/redemptions", token=nc_token).json()["items"] == []
    assert shop.api.post("/api/rewards/fulfilments", json={"pickup_code": shown["pickup_code"]},
                         token=nc_token).status_code == 403
    exported = shop.api.get(f"/api/rewards/redemptions.csv?institution_id={shop.institution_id}",
                            token=province_token)
    assert exported.status_code == 200 and exported.headers["Content-Type"].startswith("text/csv")
    lines = exported.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,created_at,user_id,reward_id,reward_name")
    assert len(lines) == 2 and ",环保水杯,10,confirmed," in lines[1]
