"""Spending points: the debit of a redemption (decided once, repeated on request) and its refund (once).

Points' half of the redemption saga (see services.rewards.redemptions): ``DebitRequested`` -> a debit entry if
the balance covers the cost (``PointsDebited``), else ``DebitRejected``; ``RefundRequested`` -> a refund entry
for a debited redemption (``PointsRefunded``). The ledger's unique ``(source_type, source_id, kind)`` is the
last guard against debiting or refunding a redemption twice.
"""

from __future__ import annotations

import logging

from services.points.ledger import append_entry, lock_account
from services.points.models import RedemptionDebit, infra
from shared import clock
from shared.db import UnitOfWork
from shared.events import DebitRejected, DebitRequested, PointsDebited, PointsRefunded, RefundRequested
from shared.outbox import record_event

log = logging.getLogger("lvbao.points")

REDEMPTION_SOURCE = "redemption"


def _answer(uow: UnitOfWork, decision: RedemptionDebit) -> None:
    if decision.outcome == "debited":
        record_event(uow, infra, PointsDebited(redemption_id=decision.redemption_id, user_id=decision.user_id,
                                               points=decision.points, entry_id=decision.entry_id,
                                               balance_after=decision.balance))
    else:
        record_event(uow, infra, DebitRejected(redemption_id=decision.redemption_id, user_id=decision.user_id,
                                               reason=decision.reason, balance=decision.balance))


def debit_for_redemption(uow: UnitOfWork, event: DebitRequested) -> None:
    """Take a redemption's cost from the balance if it covers it; either way answer rewards. Asked again, give
    the same answer again."""
    session = uow.session
    account = lock_account(session, event.user_id, event.institution_id)
    decision = session.get(RedemptionDebit, event.redemption_id)
    if decision is None:
        if event.points <= 0:
            raise ValueError(f"redemption {event.redemption_id}: a debit of {event.points} points")
        decision = RedemptionDebit(redemption_id=event.redemption_id, user_id=event.user_id, points=event.points,
                                   decided_at=clock.now())
        if account.balance >= event.points:
            entry = append_entry(
                session, account, kind="debit", points=-event.points, carbon_g=0, action_type=None, local_day=None,
                source_type=REDEMPTION_SOURCE, source_id=str(event.redemption_id), event_id=event.event_id,
                receipt={"redemption_id": event.redemption_id, "reward_id": event.reward_id,
                         "points": -event.points, "note": "兑换奖品"},
            )
            decision.outcome, decision.entry_id, decision.balance = "debited", entry.id, account.balance
        else:
            decision.outcome, decision.reason, decision.balance = "rejected", "insufficient_points", account.balance
        session.add(decision)
        session.flush()
    elif decision.user_id != event.user_id or decision.points != event.points:
        raise ValueError(f"redemption {event.redemption_id}: asked again with other terms")
    _answer(uow, decision)


def refund_redemption(uow: UnitOfWork, event: RefundRequested) -> None:
    """Give a debited redemption's points back, once (a second request is answered, not paid again)."""
    session = uow.session
    account = lock_account(session, event.user_id, event.institution_id)
    decision = session.get(RedemptionDebit, event.redemption_id, with_for_update=True)
    if decision is None:
        # Rewards asks for refunds only of redemptions points confirmed: this one's debit is still on its way.
        raise LookupError(f"redemption {event.redemption_id}: refund requested before its debit was decided")
    if decision.outcome != "debited":
        log.warning("refund requested for a redemption never debited", extra={"redemption_id": event.redemption_id})
        return
    if decision.refund_entry_id is None:
        entry = append_entry(
            session, account, kind="refund", points=decision.points, carbon_g=0, action_type=None, local_day=None,
            source_type=REDEMPTION_SOURCE, source_id=str(event.redemption_id), event_id=event.event_id,
            receipt={"redemption_id": event.redemption_id, "points": decision.points, "reason": event.reason,
                     "refunded_entry_id": decision.entry_id,
                     "note": "兑换取消，积分退回" if event.reason == "cancelled" else "超期未领取，积分退回"},
        )
        decision.refund_entry_id = entry.id
    record_event(uow, infra, PointsRefunded(redemption_id=event.redemption_id, user_id=decision.user_id,
                                            points=decision.points, entry_id=decision.refund_entry_id))
