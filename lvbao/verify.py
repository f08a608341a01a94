"""`lvbao verify`: reconcile accepted actions (activities), ledger entries and balances (points).

An operator's tool, so it reads both services' tables (each through its own database); the services never do.
Every mismatch is named. Work still travelling through the outbox (an event not yet acknowledged by points) is
"in flight", not a mismatch: ``--wait`` polls until it has settled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, text

from services.activities.models import Action
from services.activities.models import infra as activities_infra
from services.points.models import Account, LedgerEntry
from shared.db import Database, UnitOfWork

CREDIT_KINDS = ("award", "reversal")


@dataclass
class Report:
    actions_credited: int = 0
    awards: int = 0
    reversals: int = 0
    accounts: int = 0
    redemptions: int = 0
    rewards: int = 0
    in_flight: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.mismatches else 2 if self.in_flight else 0

    def lines(self) -> list[str]:
        out = [
            f"credited actions: {self.actions_credited}, awards: {self.awards}, reversals: {self.reversals}, "
            f"accounts: {self.accounts}, redemptions: {self.redemptions}, rewards: {self.rewards}",
            *[f"IN FLIGHT {line}" for line in self.in_flight],
            *[f"MISMATCH {line}" for line in self.mismatches],
        ]
        out.append("OK" if self.exit_code == 0 else
                   f"{len(self.mismatches)} mismatch(es), {len(self.in_flight)} in flight")
        return out


def _snapshot(uow: UnitOfWork) -> None:
    """Every statement of this read sees the same moment (PostgreSQL's default gives each its own)."""
    if uow.session.get_bind().dialect.name == "postgresql":
        uow.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))


def _credited_actions(uow: UnitOfWork, ids: set[int] | None = None) -> dict[int, Any]:
    query = select(Action.id, Action.user_id, Action.status, Action.quantity).where(Action.credited.is_(True))
    if ids is not None:
        query = query.where(Action.id.in_(sorted(ids)))
    return {row.id: row for row in uow.session.execute(query).all()}


def _in_flight_actions(uow: UnitOfWork) -> dict[int, set[str]]:
    """Action ids whose events points has not acknowledged yet, with the event types."""
    Outbox = activities_infra.outbox
    pending: dict[int, set[str]] = defaultdict(set)
    rows = uow.session.execute(
        select(Outbox.event_type, Outbox.message).where(Outbox.destination == "points", Outbox.acked_at.is_(None))
    ).all()
    for event_type, message in rows:
        action_id = (message.get("data") or {}).get("action_id")
        if isinstance(action_id, int):
            pending[action_id].add(event_type)
    return pending


def reconcile(activities: Database, points: Database) -> Report:
    report = Report()
    # Activities first, then points: an action credited and acknowledged between the two reads shows up in the
    # later points snapshot. Ledger entries of actions recorded after the first read are looked up again below.
    # Each read is one snapshot.
    with activities.reader() as uow:
        _snapshot(uow)
        actions = _credited_actions(uow)
        in_flight = _in_flight_actions(uow)
    with points.reader() as uow:
        _snapshot(uow)
        entries = uow.session.execute(
            select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.source_id, LedgerEntry.user_id,
                   LedgerEntry.receipt).where(LedgerEntry.source_type == "action")
        ).all()
        sums = {
            row.user_id: row
            for row in uow.session.execute(
                select(
                    LedgerEntry.user_id,
                    func.sum(LedgerEntry.points).label("balance"),
                    func.sum(case((LedgerEntry.kind.in_(CREDIT_KINDS), LedgerEntry.points), else_=0)).label("earned"),
                    func.sum(case((LedgerEntry.kind.in_(CREDIT_KINDS), LedgerEntry.carbon_g), else_=0)).label("carbon"),
                    func.max(LedgerEntry.id).label("last_id"),
                ).group_by(LedgerEntry.user_id)
            ).all()
        }
        last_balance = dict(
            uow.session.execute(
                select(LedgerEntry.id, LedgerEntry.balance_after).where(
                    LedgerEntry.id.in_([row.last_id for row in sums.values()])
                )
            ).all()
        )
        accounts = uow.session.execute(
            select(Account.user_id, Account.balance, Account.lifetime_points, Account.carbon_g)
        ).all()

    late = {int(e.source_id) for e in entries if e.source_id.isdigit()} - set(actions)
    if late:
        with activities.reader() as uow:
            actions.update(_credited_actions(uow, late))
            for action_id, events in _in_flight_actions(uow).items():
                in_flight[action_id] |= events

    report.actions_credited = len(actions)
    by_action: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for entry in entries:
        try:
            action_id = int(entry.source_id)
        except ValueError:
            report.mismatches.append(f"ledger entry {entry.id}: source id {entry.source_id!r} is not an action id")
            continue
        by_action[action_id][entry.kind].append(entry)
        report.awards += entry.kind == "award"
        report.reversals += entry.kind == "reversal"

    for action_id, action in sorted(actions.items()):
        awards = by_action.get(action_id, {}).get("award", [])
        reversals = by_action.get(action_id, {}).get("reversal", [])
        if len(awards) > 1:
            report.mismatches.append(f"action {action_id}: credited {len(awards)} times")
        if action.status == "rejected":
            if not reversals:
                _missing(report, in_flight, action_id, "ActionReversed", "rejected after crediting, never reversed")
        elif reversals:
            report.mismatches.append(f"action {action_id}: reversed in the ledger but {action.status} in activities")
        elif not awards:
            _missing(report, in_flight, action_id, "ActionRecorded", "accepted, never credited")
        for entry in awards + reversals:
            if entry.user_id != action.user_id:
                report.mismatches.append(f"action {action_id}: {entry.kind} for user {entry.user_id}, "
                                         f"recorded for user {action.user_id}")
        for reversal in reversals:
            taken = -int((reversal.receipt or {}).get("points", 0))
            awarded = sum(int((award.receipt or {}).get("points", 0)) for award in awards)
            if taken < 0 or taken > awarded:
                report.mismatches.append(f"action {action_id}: reversal takes {taken} of {awarded} awarded points")
        for award in awards:
            quantity = (award.receipt or {}).get("quantity")
            if quantity is not None and Decimal(str(quantity)) != Decimal(action.quantity):
                report.mismatches.append(
                    f"action {action_id}: receipt quantity {quantity} but the action says {action.quantity}")
    for action_id in sorted(set(by_action) - set(actions)):
        kinds = ", ".join(sorted(by_action[action_id]))
        report.mismatches.append(f"action {action_id}: ledger {kinds} without an accepted action in activities")

    report.accounts = len(accounts)
    seen = set()
    for user_id, balance, lifetime, carbon in accounts:
        seen.add(user_id)
        row = sums.get(user_id)
        expected = (row.balance, row.earned, row.carbon) if row else (0, 0, 0)
        if (balance, lifetime, carbon) != tuple(int(v or 0) for v in expected):
            report.mismatches.append(
                f"account {user_id}: balance/lifetime/carbon {balance}/{lifetime}/{carbon} but the ledger sums to "
                f"{'/'.join(str(int(v or 0)) for v in expected)}")
        if row is not None and last_balance.get(row.last_id) != balance:
            report.mismatches.append(
                f"account {user_id}: balance {balance} but the last entry's balance_after is "
                f"{last_balance.get(row.last_id)}")
    for user_id in sorted(set(sums) - seen):
        report.mismatches.append(f"user {user_id}: ledger entries without an account")
    return report


def _missing(report: Report, in_flight: dict[int, set[str]], action_id: int, event: str, what: str) -> None:
    if event in in_flight.get(action_id, ()):
        report.in_flight.append(f"action {action_id}: {event} not yet applied by points")
    else:
        report.mismatches.append(f"action {action_id}: {what}")
