"""The append-only ledger and the accounts it keeps: crediting actions, reversing them, reading them back."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.points.boards import note_entry
from services.points.models import EARNING_KINDS, Account, LedgerEntry
from services.points.receipts import compute_receipt, parse_quantity
from services.points.rules import rule_in_force, terms_of
from shared import clock
from shared.db import Database, UnitOfWork, insert_for
from shared.events import ActionRecorded, ActionReversed

log = logging.getLogger("lvbao.points")

ACTION_SOURCE = "action"


def lock_account(session: Session, user_id: int, institution_id: int) -> Account:
    """The user's account row, locked for this transaction; created first if missing (the first-credit race:
    a concurrent creator makes the insert a no-op, and both then lock the same row)."""
    locked = select(Account).where(Account.user_id == user_id).with_for_update().execution_options(
        populate_existing=True)
    account = session.scalars(locked).one_or_none()
    if account is not None:  # the usual case: one statement
        return account
    session.execute(
        insert_for(session)(Account)
        .values(user_id=user_id, institution_id=institution_id, balance=0, lifetime_points=0, carbon_g=0,
                updated_at=clock.now())
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    return session.scalars(locked).one()


def _entries_for_action(session: Session, action_id: int) -> dict[str, LedgerEntry]:
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.source_type == ACTION_SOURCE, LedgerEntry.source_id == str(action_id))
    )
    return {row.kind: row for row in rows}


def earned_on(session: Session, user_id: int, day: date, action_type: str) -> int:
    """Points a user has (awards less reversals) for one action type on one local day."""
    return session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.user_id == user_id,
            LedgerEntry.local_day == day,
            LedgerEntry.action_type == action_type,
            LedgerEntry.kind.in_(EARNING_KINDS),
        )
    )


def append_entry(session: Session, account: Account, **fields: Any) -> LedgerEntry:
    """Write one ledger entry and move the account by it, in the caller's transaction; an entry that counts on
    boards is marked for them in the same transaction."""
    account.balance += fields["points"]
    if fields["kind"] in EARNING_KINDS:
        account.lifetime_points += fields["points"]
        account.carbon_g += fields["carbon_g"]
    account.updated_at = clock.now()
    entry = LedgerEntry(
        user_id=account.user_id, institution_id=account.institution_id, balance_after=account.balance,
        created_at=clock.now(), **fields,
    )
    session.add(entry)
    session.flush()
    note_entry(session, entry)
    return entry


def _unrated_receipt(event: ActionRecorded, note: str) -> dict[str, Any]:
    return {
        "rule_id": None, "rule_version": None, "quantity": event.quantity, "unit": event.unit,
        "variant": event.variant, "factor_g_per_unit": None, "carbon_g": 0, "points": 0, "g_per_point": None,
        "uncapped_points": 0, "capped": False, "note": note,
    }


def award_for_action(uow: UnitOfWork, event: ActionRecorded) -> None:
    """Credit an accepted action once, under the rule version in force when it happened."""
    session = uow.session
    account = lock_account(session, event.user_id, event.institution_id)
    existing = _entries_for_action(session, event.action_id)
    if "award" in existing:
        return  # credited already (the same action announced again)
    action_at = datetime.fromisoformat(event.action_at)
    if action_at.tzinfo is None:
        raise ValueError(f"action {event.action_id}: action_at has no time zone")
    day = clock.local_day(action_at)
    quantity = parse_quantity(event.quantity)
    rule = rule_in_force(session, event.action_type, event.institution_id, action_at)
    if "reversal" in existing:
        receipt = _unrated_receipt(event, "该行为在入账前已被撤销，不计积分")
        receipt["reversed_entry_id"] = existing["reversal"].id
    elif rule is None:
        receipt = _unrated_receipt(event, "行为发生时没有生效的积分规则，不计积分")
    elif quantity is None:
        receipt = _unrated_receipt(event, "数量无效，不计积分")
    elif event.unit != rule.unit:
        receipt = _unrated_receipt(event, f"单位 {event.unit} 与规则的 {rule.unit} 不符，不计积分")
        receipt.update(rule_id=rule.id, rule_version=rule.version)
    else:
        earned = earned_on(session, account.user_id, day, event.action_type)
        receipt = compute_receipt(terms_of(rule), event.variant, quantity, earned)
    receipt["action_at"] = action_at.isoformat()
    append_entry(
        session, account, kind="award", points=receipt["points"], carbon_g=receipt["carbon_g"],
        action_type=event.action_type, department_id=event.department_id, local_day=day,
        source_type=ACTION_SOURCE, source_id=str(event.action_id), receipt=receipt, event_id=event.event_id,
    )


def reverse_action(uow: UnitOfWork, event: ActionReversed) -> None:
    """Take back an action's award with a compensating entry (never an edit). Points already spent cannot be
    taken back: the receipt says how many (``shortfall``). A reversal that arrives before the award is written
    too (0 points), so that the award, when it comes, is not credited."""
    session = uow.session
    account = lock_account(session, event.user_id, event.institution_id)
    existing = _entries_for_action(session, event.action_id)
    if "reversal" in existing:
        return
    award = existing.get("award")
    if award is None:
        receipt = {"reversed_entry_id": None, "reason": event.reason, "points": 0, "carbon_g": 0, "shortfall": 0,
                   "note": "撤销先于入账到达：该行为此后不再计分"}
        append_entry(session, account, kind="reversal", points=0, carbon_g=0, action_type=None, local_day=None,
                     source_type=ACTION_SOURCE, source_id=str(event.action_id), receipt=receipt,
                     event_id=event.event_id)
        return
    taken = min(award.points, account.balance)
    shortfall = award.points - taken
    note = f"行为被撤销：{event.reason}"
    if shortfall:
        note += f"；其中 {shortfall} 分已被使用，无法收回"
    receipt = {"reversed_entry_id": award.id, "reason": event.reason, "points": -taken,
               "carbon_g": -award.carbon_g, "shortfall": shortfall, "note": note}
    append_entry(session, account, kind="reversal", points=-taken, carbon_g=-award.carbon_g,
                 action_type=award.action_type, department_id=award.department_id, local_day=award.local_day,
                 source_type=ACTION_SOURCE,
                 source_id=str(event.action_id), receipt=receipt, event_id=event.event_id)
    if shortfall:
        log.warning("reversal short of spent points",
                    extra={"user_id": account.user_id, "action_id": event.action_id, "shortfall": shortfall})


# -- reading -----------------------------------------------------------------------------------------------------


def _earned_between(session: Session, user_id: int, first: date, last: date) -> dict[str, int]:
    points, carbon = session.execute(
        select(func.coalesce(func.sum(LedgerEntry.points), 0), func.coalesce(func.sum(LedgerEntry.carbon_g), 0))
        .where(LedgerEntry.user_id == user_id, LedgerEntry.kind.in_(EARNING_KINDS),
               LedgerEntry.local_day >= first, LedgerEntry.local_day <= last)
    ).one()
    return {"points": int(points), "carbon_g": int(carbon)}


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "points": entry.points,
        "carbon_g": entry.carbon_g,
        "balance_after": entry.balance_after,
        "created_at": entry.created_at,
        "source": {"type": entry.source_type, "id": entry.source_id},
        "receipt": entry.receipt,
    }


class Accounts:
    """An employee's account: balance, totals and the ledger."""

    def __init__(self, db: Database):
        self.db = db

    def summary(self, user_id: int | None) -> dict[str, Any]:
        """Balance, totals, and what was earned today and this week (Asia/Shanghai, weeks start Monday)."""
        today = clock.local_now().date()
        monday = today - timedelta(days=today.weekday())
        zero = {"points": 0, "carbon_g": 0}
        if user_id is None:
            return {"balance": 0, "lifetime_points": 0, "carbon_g": 0, "today": zero, "week": dict(zero)}
        with self.db.reader() as uow:
            account = uow.session.get(Account, user_id)
            if account is None:
                return {"balance": 0, "lifetime_points": 0, "carbon_g": 0, "today": zero, "week": dict(zero)}
            return {
                "balance": account.balance,
                "lifetime_points": account.lifetime_points,
                "carbon_g": account.carbon_g,
                "today": _earned_between(uow.session, user_id, today, today),
                "week": _earned_between(uow.session, user_id, monday, monday + timedelta(days=6)),
            }

    def ledger_page(self, user_id: int | None, after: int | None, limit: int) -> list[dict[str, Any]]:
        """A user's entries, newest first, continuing past entry ``after`` (older ones) when given."""
        if user_id is None:
            return []
        with self.db.reader() as uow:
            query = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
            if after is not None:
                query = query.where(LedgerEntry.id < after)
            rows = uow.session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit))
            return [entry_view(r) for r in rows]
