"""Redemptions, the employee's side: redeeming a reward, following it, its pickup code and cancelling it
(the saga behind it: services.rewards.saga)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.rewards import pickup
from services.rewards.catalog import is_available, move_stock
from services.rewards.models import LimitSlot, Redemption, Reward
from services.rewards.saga import reject, release, request_debit, request_refund
from shared import clock
from shared.auth.guards import Principal
from shared.config import Settings
from shared.db import Database, advisory_xact_lock
from shared.errors import ApiError
from shared.idempotency import IdempotentWrite, StoredAnswer

USER_LOCK_NAMESPACE = 0x5257  # "RW": the rewards service's per-user advisory locks


def _free_slot(session: Session, user_id: int, reward: Reward) -> int | None:
    """A free one of the user's ``per_user_limit`` places for this reward: its number, 0 when there is no
    limit, None when every place is held."""
    if reward.per_user_limit is None:
        return 0
    held = set(session.scalars(
        select(LimitSlot.slot).where(LimitSlot.user_id == user_id, LimitSlot.reward_id == reward.id)
    ))
    return next((n for n in range(1, reward.per_user_limit + 1) if n not in held), None)


class RedemptionViews:
    """How a redemption is shown: to its owner (with the pickup code while it can be collected) or to an admin."""

    def __init__(self, settings: Settings):
        self.master_secret = settings.operator_key_secret
        self.pickup_life = timedelta(days=settings.pickup_days)

    def expires_at(self, redemption: Redemption) -> datetime | None:
        if redemption.status != "confirmed" or redemption.decided_at is None:
            return None
        return clock.as_utc(redemption.decided_at) + self.pickup_life

    def view(self, redemption: Redemption, owner: bool = False) -> dict[str, Any]:
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
        return view


class Redemptions(RedemptionViews):
    def __init__(self, db: Database, settings: Settings):
        super().__init__(settings)
        self.db = db

    def redeem(self, principal: Principal, reward_id: int, idem: IdempotentWrite) -> dict[str, Any] | StoredAnswer:
        """Reserve a slot and a unit of stock and ask points for the cost (step 1 of the saga); the redemption
        as its owner sees it, or the answer the Idempotency-Key already has."""
        principal.ensure_bound()
        with self.db.uow() as uow:
            session = uow.session
            # One user's redemptions take turns: limit slots are counted and taken without a race.
            advisory_xact_lock(session, USER_LOCK_NAMESPACE, principal.user_id)
            if (answer := idem.replayed(uow)) is not None:
                return answer
            reward = session.get(Reward, reward_id)
            if reward is None or not reward.active:
                raise ApiError(404, "reward_not_found", "奖品不存在")
            if reward.institution_id != principal.institution_id:
                raise ApiError(403, "forbidden_institution", "这是其他单位的奖品")
            if not is_available(reward, clock.now()):
                raise ApiError(422, "reward_unavailable", "该奖品当前不在兑换时间内",
                               errors={"reward_id": ["不在兑换时间内"]})
            redemption = Redemption(
                user_id=principal.user_id, institution_id=principal.institution_id,
                department_id=principal.department_id, reward_id=reward.id, reward_name=reward.name,
                points_cost=reward.points_cost, status="pending", idempotency_key=idem.key, created_at=clock.now(),
                request_attempts=0,
            )
            session.add(redemption)
            try:
                session.flush()
            except IntegrityError as exc:  # the key's record was pruned, its redemption is still here
                raise ApiError(409, "idempotency_key_expired", "该幂等键已过期，请使用新的键") from exc
            slot = _free_slot(session, principal.user_id, reward)
            if slot is None:
                reject(redemption, "limit_reached")
            elif move_stock(session, reward.id, "reserved", -1, "兑换预留", principal.subject, redemption.id) is None:
                reject(redemption, "out_of_stock")
            else:
                if slot:
                    session.add(LimitSlot(user_id=principal.user_id, reward_id=reward.id, slot=slot,
                                          redemption_id=redemption.id))
                request_debit(uow, redemption)
            session.flush()
            shown = self.view(redemption, owner=True)
            idem.record(uow, shown)
            uow.commit()
            return shown

    def _own(self, session: Session, principal: Principal, redemption_id: int, lock: bool = False) -> Redemption:
        redemption = session.get(Redemption, redemption_id, with_for_update=lock)
        if redemption is None or redemption.user_id != principal.user_id:
            raise ApiError(404, "redemption_not_found", "兑换记录不存在")
        return redemption

    def get(self, principal: Principal, redemption_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            if principal.is_admin:
                redemption = uow.session.get(Redemption, redemption_id)
                if redemption is None:
                    raise ApiError(404, "redemption_not_found", "兑换记录不存在")
                principal.ensure_institution(redemption.institution_id)
                return self.view(redemption, owner=redemption.user_id == principal.user_id)
            return self.view(self._own(uow.session, principal, redemption_id), owner=True)

    def pickup_code(self, principal: Principal, redemption_id: int) -> str:
        with self.db.reader() as uow:
            redemption = self._own(uow.session, principal, redemption_id)
            code = self.view(redemption, owner=True)["pickup_code"]
        if code is None:
            raise ApiError(409, "no_pickup_code", "该兑换当前没有可用的取货码")
        return code

    def cancel(self, principal: Principal, redemption_id: int) -> dict[str, Any]:
        """Cancel before fulfilment: the stock comes back and the points are refunded. Cancelling a cancelled
        redemption answers it again (a retried tap)."""
        with self.db.uow() as uow:
            redemption = self._own(uow.session, principal, redemption_id, lock=True)
            if redemption.status == "cancelled":
                return self.view(redemption, owner=True)
            if redemption.status == "pending":
                raise ApiError(409, "redemption_pending", "兑换正在处理中，请稍后再取消")
            if redemption.status != "confirmed":
                raise ApiError(409, "redemption_not_cancellable", "该兑换已无法取消")
            redemption.status, redemption.closed_at = "cancelled", clock.now()
            release(uow.session, redemption, "兑换取消")
            request_refund(uow, redemption, "cancelled")
            uow.commit()
            return self.view(redemption, owner=True)

    def list_mine(self, principal: Principal, limit: int, after: int | None) -> list[dict[str, Any]]:
        """The caller's redemptions, newest first, continuing past redemption ``after`` (older ones)."""
        query = select(Redemption).where(Redemption.user_id == principal.user_id)
        if after is not None:
            query = query.where(Redemption.id < after)
        with self.db.reader() as uow:
            rows = uow.session.scalars(query.order_by(Redemption.id.desc()).limit(limit))
            return [self.view(r, owner=True) for r in rows]
