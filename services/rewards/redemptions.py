"""Redemptions: the saga across rewards and points, pickup, cancellation and expiry.

1. ``redeem``: under the caller's lock, a per-user limit slot and one unit of stock are reserved (conditional
   updates, database constraints behind them), the redemption is stored ``pending`` and ``DebitRequested`` goes
   to points through the outbox, all in one transaction. A redemption that cannot get a slot or stock is stored
   ``rejected`` at once (``limit_reached`` / ``out_of_stock``), with nothing reserved.
2. Points decides once per redemption and answers ``PointsDebited`` or ``DebitRejected``; rewards confirms (a
   pickup code) or rejects and releases what it reserved. Rewards never decides a pending redemption on its
   own, so stock and points cannot disagree: one that waits too long is asked about again (:meth:`ask_again`),
   and points repeats its decision.
3. A confirmed redemption is fulfilled once (its pickup code), or cancelled by its owner / expired after
   ``pickup_days``: the stock comes back and ``RefundRequested`` gives the points back, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import has_request_context, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.rewards import pickup
from services.rewards.catalog import is_available, move_stock
from services.rewards.models import LimitSlot, Redemption, Reward, infra
from shared import clock
from shared.auth.guards import Principal
from shared.db import Database, UnitOfWork, advisory_xact_lock
from shared.errors import ApiError
from shared.events import DebitRejected, DebitRequested, PointsDebited, PointsRefunded, RefundRequested
from shared.idempotency import IdempotentWrite
from shared.outbox import record_event

log = logging.getLogger("lvbao.rewards")

USER_LOCK_NAMESPACE = 0x5257  # "RW": the rewards service's per-user advisory locks
SYSTEM = "system"
# After this many requests without an answer, every further one is logged as a warning (points may be down).
PATIENT_ATTEMPTS = 5
MAX_BACKOFF_FACTOR = 64
MAX_BACKOFF = timedelta(hours=1)


def _reject(redemption: Redemption, reason: str) -> None:
    redemption.status, redemption.reason, redemption.decided_at = "rejected", reason, clock.now()


def _free_slot(session: Session, user_id: int, reward: Reward) -> int | None:
    """A free one of the user's ``per_user_limit`` places for this reward: its number, 0 when there is no
    limit, None when every place is held."""
    if reward.per_user_limit is None:
        return 0
    held = set(session.scalars(
        select(LimitSlot.slot).where(LimitSlot.user_id == user_id, LimitSlot.reward_id == reward.id)
    ))
    return next((n for n in range(1, reward.per_user_limit + 1) if n not in held), None)


def _release(session: Session, redemption: Redemption, why: str) -> None:
    """Give back what a redemption held: its unit of stock and its limit slot."""
    move_stock(session, redemption.reward_id, "released", 1, why, SYSTEM, redemption.id)
    slot = session.scalars(select(LimitSlot).where(LimitSlot.redemption_id == redemption.id)).one_or_none()
    if slot is not None:
        session.delete(slot)


def _request_debit(uow: UnitOfWork, redemption: Redemption) -> None:
    redemption.request_attempts += 1
    redemption.requested_at = clock.now()
    record_event(uow, infra, DebitRequested(
        redemption_id=redemption.id, user_id=redemption.user_id, institution_id=redemption.institution_id,
        reward_id=redemption.reward_id, points=redemption.points_cost, attempt=redemption.request_attempts,
    ))


def _request_refund(uow: UnitOfWork, redemption: Redemption, reason: str) -> None:
    record_event(uow, infra, RefundRequested(
        redemption_id=redemption.id, user_id=redemption.user_id, institution_id=redemption.institution_id,
        points=redemption.points_cost, reason=reason,
    ))


class RedemptionService:
    def __init__(self, db: Database, master_secret: str, pickup_days: int, debit_retry_seconds: int):
        self.db = db
        self.master_secret = master_secret
        self.pickup_life = timedelta(days=pickup_days)
        self.retry_after = timedelta(seconds=debit_retry_seconds)

    # -- views ------------------------------------------------------------------------------------------------

    def expires_at(self, redemption: Redemption) -> datetime | None:
        if redemption.status != "confirmed" or redemption.decided_at is None:
            return None
        return clock.as_utc(redemption.decided_at) + self.pickup_life

    def view(self, redemption: Redemption, owner: bool = False) -> dict[str, Any]:
        """A redemption as its owner (with the pickup code while it can be collected) or an admin sees it."""
        view = {
            "id": redemption.id,
            "user_id": redemption.user_id,
            "institution_id": redemption.institution_id,
            "reward_id": redemption.reward_id,
            "reward_name": redemption.reward_name,
            "points_cost": redemption.points_cost,
            "status": redemption.status,
            "reason": redemption.reason,
            "created_at": redemption.created_at,
            "decided_at": redemption.decided_at,
            "expires_at": self.expires_at(redemption),
            "fulfilled_at": redemption.fulfilled_at,
            "closed_at": redemption.closed_at,
            "refunded_at": redemption.refunded_at,
            "pickup_code": None,
            "pickup_qr_url": None,
        }
        if owner and redemption.status == "confirmed" and redemption.pickup_nonce:
            view["pickup_code"] = pickup.code_for(self.master_secret, redemption.id, redemption.pickup_nonce)
            if has_request_context():
                view["pickup_qr_url"] = url_for("redemptions.PickupSvg", redemption_id=redemption.id)
        return view

    # -- the employee's side ----------------------------------------------------------------------------------

    def redeem(self, who: Principal, reward_id: int, idem: IdempotentWrite) -> None:
        who.ensure_bound()
        with self.db.uow() as uow:
            session = uow.session
            # One user's redemptions take turns: limit slots are counted and taken without a race.
            advisory_xact_lock(session, USER_LOCK_NAMESPACE, who.user_id)
            if idem.replayed(uow):
                return
            reward = session.get(Reward, reward_id)
            if reward is None or not reward.active:
                raise ApiError(404, "reward_not_found", "奖品不存在")
            if reward.institution_id != who.institution_id:
                raise ApiError(403, "forbidden_institution", "这是其他单位的奖品")
            if not is_available(reward, clock.now()):
                raise ApiError(422, "reward_unavailable", "该奖品当前不在兑换时间内",
                               errors={"reward_id": ["不在兑换时间内"]})
            redemption = Redemption(
                user_id=who.user_id, institution_id=who.institution_id, department_id=who.department_id,
                reward_id=reward.id, reward_name=reward.name, points_cost=reward.points_cost, status="pending",
                idempotency_key=idem.key, created_at=clock.now(), request_attempts=0,
            )
            session.add(redemption)
            try:
                session.flush()
            except IntegrityError as exc:  # the key's record was pruned, its redemption is still here
                raise ApiError(409, "idempotency_key_expired", "该幂等键已过期，请使用新的键") from exc
            slot = _free_slot(session, who.user_id, reward)
            if slot is None:
                _reject(redemption, "limit_reached")
            elif move_stock(session, reward.id, "reserved", -1, "兑换预留", who.subject, redemption.id) is None:
                _reject(redemption, "out_of_stock")
            else:
                if slot:
                    session.add(LimitSlot(user_id=who.user_id, reward_id=reward.id, slot=slot,
                                          redemption_id=redemption.id))
                _request_debit(uow, redemption)
            session.flush()
            idem.record(uow, self.view(redemption, owner=True))
            uow.commit()

    def _own(self, session: Session, who: Principal, redemption_id: int, lock: bool = False) -> Redemption:
        redemption = session.get(Redemption, redemption_id, with_for_update=lock)
        if redemption is None or redemption.user_id != who.user_id:
            raise ApiError(404, "redemption_not_found", "兑换记录不存在")
        return redemption

    def get(self, who: Principal, redemption_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            if who.is_admin:
                redemption = uow.session.get(Redemption, redemption_id)
                if redemption is None:
                    raise ApiError(404, "redemption_not_found", "兑换记录不存在")
                who.ensure_institution(redemption.institution_id)
                return self.view(redemption, owner=redemption.user_id == who.user_id)
            return self.view(self._own(uow.session, who, redemption_id), owner=True)

    def pickup_code(self, who: Principal, redemption_id: int) -> str:
        with self.db.reader() as uow:
            redemption = self._own(uow.session, who, redemption_id)
            code = self.view(redemption, owner=True)["pickup_code"]
        if code is None:
            raise ApiError(409, "no_pickup_code", "该兑换当前没有可用的取货码")
        return code

    def cancel(self, who: Principal, redemption_id: int) -> dict[str, Any]:
        """Cancel before fulfilment: the stock comes back and the points are refunded. Cancelling a cancelled
        redemption answers it again (a retried tap)."""
        with self.db.uow() as uow:
            redemption = self._own(uow.session, who, redemption_id, lock=True)
            if redemption.status == "cancelled":
                return self.view(redemption, owner=True)
            if redemption.status == "pending":
                raise ApiError(409, "redemption_pending", "兑换正在处理中，请稍后再取消")
            if redemption.status != "confirmed":
                raise ApiError(409, "redemption_not_cancellable", "该兑换已无法取消")
            redemption.status, redemption.closed_at = "cancelled", clock.now()
            _release(uow.session, redemption, "兑换取消")
            _request_refund(uow, redemption, "cancelled")
            uow.commit()
            return self.view(redemption, owner=True)

    def list_mine(self, who: Principal, limit: int, before_id: int | None) -> list[dict[str, Any]]:
        query = select(Redemption).where(Redemption.user_id == who.user_id)
        if before_id is not None:
            query = query.where(Redemption.id < before_id)
        with self.db.reader() as uow:
            rows = uow.session.scalars(query.order_by(Redemption.id.desc()).limit(limit))
            return [self.view(r, owner=True) for r in rows]

    # -- the admin's side -------------------------------------------------------------------------------------

    def _admin_query(self, who: Principal, filters: dict[str, Any]):
        institution_id = filters.get("institution_id") or who.institution_id
        if institution_id is None:
            raise ApiError(422, "validation_error", "请指定单位", errors={"institution_id": ["缺少必填字段"]})
        who.ensure_institution(institution_id)
        query = select(Redemption).where(Redemption.institution_id == institution_id)
        for name in ("status", "reward_id", "user_id"):
            if filters.get(name) is not None:
                query = query.where(getattr(Redemption, name) == filters[name])
        if filters.get("from_") is not None:
            query = query.where(Redemption.created_at >= filters["from_"])
        if filters.get("to") is not None:
            query = query.where(Redemption.created_at < filters["to"])
        return query

    def list_for_admin(self, who: Principal, filters: dict[str, Any], limit: int, before_id: int | None
                       ) -> list[dict[str, Any]]:
        query = self._admin_query(who, filters)
        if before_id is not None:
            query = query.where(Redemption.id < before_id)
        with self.db.reader() as uow:
            return [self.view(r) for r in uow.session.scalars(query.order_by(Redemption.id.desc()).limit(limit))]

    def rows_for_export(self, who: Principal, filters: dict[str, Any], batch: int = 1000
                        ) -> Iterator[dict[str, Any]]:
        """Every matching redemption, oldest first, read in batches (the query is checked before the first)."""
        query = self._admin_query(who, filters)

        def rows() -> Iterator[dict[str, Any]]:
            after = 0
            while True:
                with self.db.reader() as uow:
                    page = [self.view(r) for r in uow.session.scalars(
                        query.where(Redemption.id > after).order_by(Redemption.id).limit(batch))]
                yield from page
                if len(page) < batch:
                    return
                after = page[-1]["id"]

        return rows()

    def fulfil(self, who: Principal, code: str) -> dict[str, Any]:
        """Hand the reward over: the pickup code works once, at its own institution, while the pickup is open."""
        try:
            redemption_id = pickup.redemption_id_of(code)
        except pickup.PickupCodeInvalid as exc:
            raise ApiError(400, "pickup_code_invalid", "无效的取货码") from exc
        with self.db.uow() as uow:
            redemption = uow.session.get(Redemption, redemption_id, with_for_update=True)
            try:
                pickup.verify(self.master_secret, code, redemption.pickup_nonce if redemption else None)
            except pickup.PickupCodeInvalid as exc:
                raise ApiError(400, "pickup_code_invalid", "无效的取货码") from exc
            if redemption.institution_id != who.institution_id and not who.is_province_admin:
                raise ApiError(403, "forbidden_institution", "这是其他单位的取货码")
            if redemption.status == "fulfilled":
                raise ApiError(409, "pickup_code_used", "该取货码已使用")
            if redemption.status == "cancelled":
                raise ApiError(409, "redemption_cancelled", "该兑换已取消")
            expires_at = self.expires_at(redemption)
            if redemption.status == "expired" or (expires_at is not None and clock.now() >= expires_at):
                raise ApiError(410, "pickup_expired", "取货码已过期，积分已退回或将退回")
            redemption.status, redemption.fulfilled_at = "fulfilled", clock.now()
            redemption.fulfilled_by = who.subject
            uow.commit()
            return self.view(redemption)

    # -- chores (the relay runs them every minute) ------------------------------------------------------------

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
                _request_debit(uow, redemption)
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
                _release(uow.session, redemption, "取货超期")
                _request_refund(uow, redemption, "expired")
            uow.commit()
        return len(due)

    def chores(self) -> dict[str, int]:
        return {"asked_again": self.ask_again(), "expired": self.expire_pickups()}


# -- points' answers (event handlers) ---------------------------------------------------------------------------


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
        _request_refund(uow, redemption, "not_pending")


def reject_redemption(uow: UnitOfWork, event: DebitRejected) -> None:
    """Points refused the debit: the redemption is rejected and its stock and slot are released."""
    redemption = _redemption_for_answer(uow, event.redemption_id)
    if redemption is None or redemption.status != "pending":
        return  # the same answer again
    _reject(redemption, event.reason)
    _release(uow.session, redemption, "积分不足，释放库存")


def note_refund(uow: UnitOfWork, event: PointsRefunded) -> None:
    """Points gave the cost back: the redemption says when."""
    redemption = _redemption_for_answer(uow, event.redemption_id)
    if redemption is not None and redemption.refunded_at is None:
        redemption.refunded_at = event.occurred_at
        redemption.refund_entry_id = event.entry_id
