"""The redemption saga across rewards and points: its steps, points' answers and the deadlines that keep it moving.

1. ``redeem`` (services.rewards.redemptions): under the caller's lock, a per-user limit slot and one unit of
   stock are reserved (conditional updates, database constraints behind them), the redemption is stored
   ``pending`` and ``DebitRequested`` goes to points through the outbox, all in one transaction. A redemption
   that cannot get a slot or stock is stored ``rejected`` at once (``limit_reached`` / ``out_of_stock``), with
   nothing reserved.
2. Points decides once per redemption and answers ``PointsDebited`` or ``DebitRejected``; rewards confirms (a
   pickup code) or rejects and releases what it reserved. Rewards never decides a pending redemption on its
   own, so stock and points cannot disagree: one that waits too long is asked about again
   (:meth:`Deadlines.ask_again`), and points repeats its decision.
3. A confirmed redemption is fulfilled once (its pickup code), or cancelled by its owner / expired after
   ``pickup_days`` (:meth:`Deadlines.expire_pickups`): the stock comes back and ``RefundRequested`` gives the
   points back, once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.rewards import pickup
from services.rewards.catalog import move_stock
from services.rewards.models import LimitSlot, Redemption, infra
from shared import clock
from shared.config import Settings
from shared.db import Database, UnitOfWork
from shared.events import DebitRejected, DebitRequested, PointsDebited, PointsRefunded, RefundRequested
from shared.outbox import record_event

log = logging.getLogger("lvbao.rewards")

SYSTEM = "system"
# After this many requests without an answer, every further one is logged as a warning (points may be down).
PATIENT_ATTEMPTS = 5
MAX_BACKOFF_FACTOR = 64
MAX_BACKOFF = timedelta(hours=1)


# -- the saga's steps ---------------------------------------------------------------------------------------------


def reject(redemption: Redemption, reason: str) -> None:
    redemption.status, redemption.reason, redemption.decided_at = "rejected", reason, clock.now()


def release(session: Session, redemption: Redemption, why: str) -> None:
    """Give back what a redemption held: its unit of stock and its limit slot."""
    move_stock(session, redemption.reward_id, "released", 1, why, SYSTEM, redemption.id)
    slot = session.scalars(select(LimitSlot).where(LimitSlot.redemption_id == redemption.id)).one_or_none()
    if slot is not None:
        session.delete(slot)


def request_debit(uow: UnitOfWork, redemption: Redemption) -> None:
    redemption.request_attempts += 1
    redemption.requested_at = clock.now()
    record_event(uow, infra, DebitRequested(
        redemption_id=redemption.id, user_id=redemption.user_id, institution_id=redemption.institution_id,
        reward_id=redemption.reward_id, points=redemption.points_cost, attempt=redemption.request_attempts,
    ))


def request_refund(uow: UnitOfWork, redemption: Redemption, reason: str) -> None:
    record_event(uow, infra, RefundRequested(
        redemption_id=redemption.id, user_id=redemption.user_id, institution_id=redemption.institution_id,
        points=redemption.points_cost, reason=reason,
    ))


# -- points' answers (event handlers) -----------------------------------------------------------------------------


def _redemption_for_answer(uow: UnitOfWork, redemption_id: int) -> Redemption | None:
    redemption = uow.session.get(Redemption, redemption_id, with_for_update=True)
    if redemption is None:
        log.error("points answered about an unknown redemption", extra={"redemption_id": redemption_id})
    return redemption


def confirm_redemption(uow: UnitOfWork, event: PointsDebited) -> None:
    """Points took the cost: the pending redemption is confirmed and gets its pickup code."""
    redemption = _redemption_for_answer(uow, event.redemption_id)
    if redemption is None:
        return
    if redemption.status == "pending":
        redemption.status, redemption.decided_at = "confirmed", clock.now()
        redemption.pickup_nonce = pickup.new_nonce()
        redemption.debit_entry_id = event.entry_id
    elif redemption.debit_entry_id is None:
        # Decided otherwise already (never by rewards alone, so this is a defect somewhere): give the points back
        # rather than keep them for nothing.
        log.error("points debited for a redemption that is not pending; refunding",
                  extra={"redemption_id": redemption.id, "status": redemption.status})
        redemption.debit_entry_id = event.entry_id
        request_refund(uow, redemption, "not_pending")


def reject_redemption(uow: UnitOfWork, event: DebitRejected) -> None:
    """Points refused the debit: the redemption is rejected and its stock and slot are released."""
    redemption = _redemption_for_answer(uow, event.redemption_id)
    if redemption is None or redemption.status != "pending":
        return  # the same answer again
    reject(redemption, event.reason)
    release(uow.session, redemption, "积分不足，释放库存")


def note_refund(uow: UnitOfWork, event: PointsRefunded) -> None:
    """Points gave the cost back: the redemption says when."""
    redemption = _redemption_for_answer(uow, event.redemption_id)
    if redemption is not None and redemption.refunded_at is None:
        redemption.refunded_at = event.occurred_at
        redemption.refund_entry_id = event.entry_id


# -- deadlines (the relay runs them every minute) -----------------------------------------------------------------


class Deadlines:
    """What happens when a redemption waits too long: points is asked again, an uncollected pickup expires."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.pickup_life = timedelta(days=settings.pickup_days)
        self.retry_after = timedelta(seconds=settings.debit_retry_seconds)

    def ask_again(self, batch: int = 500) -> int:
        """Ask points again about pending redemptions that got no answer: after the retry interval, then twice,
        four times ... as long (at most an hour), so an outage of points does not fill its queue with repeats.
        (The outbox already re-delivers what was not acknowledged; this covers what it gave up on.)"""
        now = clock.now()
        asked = 0
        with self.db.uow() as uow:
            waiting = uow.session.scalars(
                select(Redemption)
                .where(Redemption.status == "pending", Redemption.requested_at < now - self.retry_after)
                .order_by(Redemption.requested_at).limit(batch).with_for_update(skip_locked=True)
            )
            for redemption in waiting:
                backoff = self.retry_after * min(2 ** max(redemption.request_attempts - 1, 0), MAX_BACKOFF_FACTOR)
                if clock.as_utc(redemption.requested_at) + min(backoff, MAX_BACKOFF) > now:
                    continue
                request_debit(uow, redemption)
                asked += 1
                if redemption.request_attempts > PATIENT_ATTEMPTS:
                    log.warning("redemption still waiting for points",
                                extra={"redemption_id": redemption.id, "attempts": redemption.request_attempts})
            uow.commit()
        return asked

    def expire_pickups(self, batch: int = 500) -> int:
        """Close confirmed redemptions nobody collected in time: stock back, points refunded."""
        cutoff = clock.now() - self.pickup_life
        with self.db.uow() as uow:
            due = list(uow.session.scalars(
                select(Redemption).where(Redemption.status == "confirmed", Redemption.decided_at <= cutoff)
                .order_by(Redemption.decided_at).limit(batch).with_for_update(skip_locked=True)
            ))
            for redemption in due:
                redemption.status, redemption.closed_at = "expired", clock.now()
                release(uow.session, redemption, "取货超期")
                request_refund(uow, redemption, "expired")
            uow.commit()
        return len(due)

    def run(self) -> dict[str, int]:
        return {"asked_again": self.ask_again(), "expired": self.expire_pickups()}
