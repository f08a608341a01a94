"""Crediting accepted actions and reversing them: receipts, rule versions, daily caps by local day, once only."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.points.handlers import HANDLERS
from services.points.ledger import ACTION_SOURCE
from services.points.models import Account, LedgerEntry, infra
from services.points.rules import RuleBook
from shared import clock
from shared.auth.guards import Principal
from shared.consumer import consume
from shared.events import ActionRecorded, ActionReversed
from tests import factories

pytestmark = pytest.mark.integration

PROVINCE = Principal(subject="admin:1", token_type="access", roles=frozenset({"province_admin"}))
_ids = itertools.count(1000)


def local(text: str) -> datetime:
    """A wall-clock time in Asia/Shanghai."""
    return datetime.fromisoformat(text).replace(tzinfo=clock.LOCAL_TZ)


def action(at: datetime, *, action_id: int | None = None, user_id: int = 1, institution_id: int = 1,
           action_type: str = "commute", variant: str = "metro", quantity: str = "10") -> ActionRecorded:
    return factories.action_event(at, action_id=action_id or next(_ids), user_id=user_id,
                                  institution_id=institution_id, action_type=action_type, variant=variant,
                                  quantity=quantity)


def deliver(databases, *events):
    return factories.to_points(databases, *events)


def entries(databases, user_id: int = 1) -> list[LedgerEntry]:
    with databases["points"].reader() as uow:
        return list(uow.session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user_id)
                                        .order_by(LedgerEntry.id)))


def account(databases, user_id: int = 1) -> Account | None:
    with databases["points"].reader() as uow:
        return uow.session.get(Account, user_id)


def test_an_accepted_commute_earns_points_with_a_carbon_receipt(databases, clean):
    event = action(local("2025-03-10T08:30"), quantity="10.5")
    assert deliver(databases, event)["applied"] == 1
    [entry] = entries(databases)
    assert (entry.kind, entry.points, entry.carbon_g, entry.balance_after) == ("award", 44, 2216, 44)
    assert (entry.source_type, entry.source_id, entry.event_id) == (ACTION_SOURCE, str(event.action_id),
                                                                    event.event_id)
    assert entry.local_day.isoformat() == "2025-03-10" and entry.action_type == "commute"
    receipt = entry.receipt
    assert receipt["rule_version"] == 1 and isinstance(receipt["rule_id"], int)
    assert {k: receipt[k] for k in ("quantity", "unit", "variant", "factor_g_per_unit", "carbon_g", "points",
                                    "g_per_point", "uncapped_points", "capped")} == {
        "quantity": "10.5", "unit": "km", "variant": "metro", "factor_g_per_unit": 211, "carbon_g": 2216,
        "points": 44, "g_per_point": 50, "uncapped_points": 44, "capped": False}
    assert receipt["note"]
    held = account(databases)
    assert (held.balance, held.lifetime_points, held.carbon_g, held.institution_id) == (44, 44, 2216, 1)


def test_the_same_action_is_credited_once_however_often_it_arrives(databases, clean):
    event = action(local("2025-03-10T08:30"))
    assert deliver(databases, event)["applied"] == 1
    assert deliver(databases, event, event)["duplicate"] == 2
    # Announced again under a new event id (e.g. re-published by activities): still one award.
    again = ActionRecorded(**{**event.data(), "event_id": "another-event"})
    assert deliver(databases, again)["applied"] == 1
    assert [e.kind for e in entries(databases)] == ["award"]
    assert account(databases).balance == 42


def test_concurrent_deliveries_of_one_action_credit_it_once(databases, clean):
    message = action(local("2025-03-10T08:30"), user_id=5).to_message()
    others = [ActionRecorded(**{**action(local("2025-03-10T08:30")).data(), "action_id": 77, "user_id": 5,
                                "event_id": f"e-{i}"}).to_message() for i in range(3)]
    results, errors, barrier = [], [], threading.Barrier(8)

    def run(msg):
        barrier.wait()
        try:
            results.append(consume("points", databases["points"], infra, HANDLERS, [msg]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in [message] * 5 + others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [(e.kind, e.source_id) for e in entries(databases, 5)].count(("award", "77")) == 1
    assert len(entries(databases, 5)) == 2
    assert account(databases, 5).balance == 84


def test_concurrent_first_credits_respect_the_daily_cap(databases, clean):
    """Five check-ins of a brand-new account at once (the account row does not exist yet): the cap of 6 points
    holds because each credit locks the account before counting the day."""
    events = [action(local(f"2025-03-10T12:0{i}"), user_id=9, action_type="clean_plate", variant="default",
                     quantity="1") for i in range(5)]
    barrier, errors = threading.Barrier(5), []

    def run(event):
        barrier.wait()
        try:
            deliver(databases, event)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    awards = entries(databases, 9)
    assert len(awards) == 5 and sorted(e.points for e in awards) == [0, 0, 2, 2, 2]
    assert account(databases, 9).balance == 6
    assert [e.balance_after for e in awards] == [2, 4, 6, 6, 6]


def test_daily_cap_counts_by_local_day_across_utc_midnight(databases, clean):
    walk = {"variant": "walk", "quantity": "15"}  # 15 km x 272 g = 4080 g = 81 points; cap 240 a day
    late = [action(local(f"2025-03-10T23:{m}"), **walk) for m in ("00", "10", "20", "30")]
    deliver(databases, *late)
    assert [e.points for e in entries(databases)] == [81, 81, 78, 0]
    capped = entries(databases)[-1].receipt
    assert capped["capped"] is True and capped["uncapped_points"] == 81 and "已达每日上限" in capped["note"]
    # 00:30 in Shanghai is 16:30 UTC of the same UTC day, but a new local day: the cap starts again.
    after_midnight = action(local("2025-03-11T00:30"), **walk)
    assert datetime.fromisoformat(after_midnight.action_at).astimezone(clock.UTC).day == 10
    deliver(databases, after_midnight)
    assert entries(databases)[-1].points == 81 and entries(databases)[-1].local_day.isoformat() == "2025-03-11"
    # 07:30 and 08:30 on the 11th straddle UTC midnight but are one local day: they share its cap.
    deliver(databases, action(local("2025-03-11T07:30"), **walk), action(local("2025-03-11T08:30"), **walk))
    deliver(databases, action(local("2025-03-11T09:30"), **walk))
    assert [e.points for e in entries(databases)[-3:]] == [81, 78, 0]
    assert account(databases).balance == 240 + 240


def test_a_version_starting_tomorrow_changes_no_past_credit(databases, clean, frozen_clock):
    now = local("2025-06-02T10:00")
    frozen_clock.set(now)
    before = action(now - timedelta(hours=2))
    deliver(databases, before)
    tomorrow = now + timedelta(days=1)
    rule = {**_commute_rule(metro=300), "effective_from": tomorrow}
    published = RuleBook(databases["points"]).publish(PROVINCE, rule)
    assert published["version"] == 2

    occurred_today = action(now + timedelta(hours=3))
    occurred_after = action(tomorrow + timedelta(hours=1))
    frozen_clock.set(tomorrow + timedelta(days=1))  # both are delivered once v2 is in force
    deliver(databases, occurred_today, occurred_after)
    awards = entries(databases)
    assert [(e.receipt["rule_version"], e.receipt["factor_g_per_unit"], e.points) for e in awards] == [
        (1, 211, 42), (1, 211, 42), (2, 300, 60)]
    assert awards[0].receipt == _receipt_of(databases, before.action_id)


def test_an_institution_override_beats_the_default_while_in_force(databases, clean, frozen_clock):
    frozen_clock.set(local("2025-06-02T10:00"))
    override = {
        "action_type": "clean_plate", "institution_id": 7, "unit": "meal",
        "variants": {"default": {"carbon_g_per_unit": 200}}, "g_per_point": 50, "daily_cap_points": 6,
        "claim_window_days": 1, "source": "本单位食堂称重：每餐少浪费约 200 克",
        "effective_from": clock.now(), "effective_to": local("2025-06-03T00:00"),
    }
    assert RuleBook(databases["points"]).publish(PROVINCE, override)["version"] == 1
    meal = {"action_type": "clean_plate", "variant": "default", "quantity": "1"}
    deliver(databases,
            action(local("2025-06-02T12:00"), user_id=1, institution_id=7, **meal),
            action(local("2025-06-02T12:00"), user_id=2, institution_id=8, **meal),
            action(local("2025-06-03T12:00"), user_id=1, institution_id=7, **meal))
    first, after_end = entries(databases, 1)
    assert (first.points, first.receipt["factor_g_per_unit"]) == (4, 200)
    assert (after_end.points, after_end.receipt["factor_g_per_unit"]) == (2, 100)  # the default again
    assert entries(databases, 2)[0].points == 2


def test_an_action_with_no_rule_in_force_is_recorded_with_zero_points(databases, clean):
    deliver(databases, action(local("2019-06-01T08:00")))
    [entry] = entries(databases)
    assert (entry.kind, entry.points, entry.carbon_g) == ("award", 0, 0)
    assert entry.receipt["rule_id"] is None and "没有生效的积分规则" in entry.receipt["note"]
    assert account(databases).balance == 0


def test_reversal_takes_the_award_back_and_frees_the_day(databases, clean):
    clean_plate = {"action_type": "clean_plate", "variant": "default", "quantity": "1"}
    meals = [action(local(f"2025-03-10T12:0{i}"), **clean_plate) for i in range(3)]
    deliver(databases, *meals)
    assert account(databases).balance == 6
    reversal = ActionReversed(action_id=meals[0].action_id, user_id=1, institution_id=1, reason="盘中有剩菜")
    deliver(databases, reversal)
    deliver(databases, reversal, ActionReversed(**{**reversal.data(), "event_id": "again"}))
    last = entries(databases)[-1]
    assert (last.kind, last.points, last.carbon_g, last.balance_after) == ("reversal", -2, -100, 4)
    assert last.receipt == {"reversed_entry_id": entries(databases)[0].id, "reason": "盘中有剩菜", "points": -2,
                            "carbon_g": -100, "shortfall": 0, "note": last.receipt["note"]}
    assert last.local_day.isoformat() == "2025-03-10" and last.action_type == "clean_plate"
    held = account(databases)
    assert (held.balance, held.lifetime_points, held.carbon_g) == (4, 4, 200)
    deliver(databases, action(local("2025-03-10T18:00"), **clean_plate))
    assert entries(databases)[-1].points == 2  # the reversed meal no longer counts against the cap


def test_reversal_after_points_were_spent_records_the_shortfall(databases, clean):
    award = action(local("2025-03-10T08:30"))  # 42 points
    deliver(databases, award)
    _spend(databases, 30)
    deliver(databases, ActionReversed(action_id=award.action_id, user_id=1, institution_id=1, reason="距离造假"))
    last = entries(databases)[-1]
    assert (last.points, last.carbon_g, last.balance_after) == (-12, -2110, 0)
    assert last.receipt["shortfall"] == 30 and "30 分已被使用" in last.receipt["note"]
    assert account(databases).balance == 0


def test_a_reversal_arriving_before_the_award_stops_the_award(databases, clean):
    award = action(local("2025-03-10T08:30"))
    deliver(databases, ActionReversed(action_id=award.action_id, user_id=1, institution_id=1, reason="审核驳回"))
    deliver(databases, award)
    reversal, late = entries(databases)
    assert (reversal.kind, reversal.points, reversal.receipt["reversed_entry_id"]) == ("reversal", 0, None)
    assert (late.kind, late.points, late.carbon_g) == ("award", 0, 0)
    assert late.receipt["reversed_entry_id"] == reversal.id
    assert account(databases).balance == 0


def test_awkward_actions_earn_what_the_rule_allows(databases, clean):
    deliver(databases,
            action(local("2025-03-10T08:00"), variant="walk", quantity="20"),   # above walk's 15 km bound
            action(local("2025-03-10T09:00"), variant="teleport", quantity="3"),
            action(local("2025-03-10T10:00"), quantity="lots"),
            ActionRecorded(**{**action(local("2025-03-10T11:00")).data(), "unit": "mile"}))
    bounded, unknown, garbled, miles = entries(databases)
    assert (bounded.points, bounded.carbon_g, bounded.receipt["counted_quantity"]) == (81, 4080, "15")
    assert unknown.points == 0 and "teleport" in unknown.receipt["note"]
    assert garbled.points == 0 and "数量无效" in garbled.receipt["note"]
    assert miles.points == 0 and miles.receipt["rule_version"] == 1 and "mile" in miles.receipt["note"]


def test_the_database_refuses_a_negative_balance(databases, clean):
    deliver(databases, action(local("2025-03-10T08:30")))
    with pytest.raises(Exception, match="balance"):
        _spend(databases, 43)
    assert account(databases).balance == 42


# -- helpers -----------------------------------------------------------------------------------------------------


def _commute_rule(metro: int) -> dict:
    variants = {"walk": 272, "bike": 272, "bus": 200, "metro": metro, "carpool": 136, "ev": 186}
    return {
        "action_type": "commute", "institution_id": None, "unit": "km",
        "variants": {k: {"carbon_g_per_unit": v} for k, v in variants.items()}, "g_per_point": 50,
        "daily_cap_points": 240, "daily_count_limit": 4, "claim_window_days": 7, "source": "测试：地铁系数更新",
    }


def _receipt_of(databases, action_id: int) -> dict:
    with databases["points"].reader() as uow:
        return uow.session.scalars(select(LedgerEntry.receipt).where(LedgerEntry.source_id == str(action_id))).one()


def _spend(databases, points: int, user_id: int = 1) -> None:
    """What a redemption's debit will do (the rewards saga is not here yet): a debit entry and a lower balance."""
    factories.ledger_entry(databases, user_id, -points, kind="debit", source_type="redemption", source_id="r-1",
                           receipt={"reward": "环保袋"})
