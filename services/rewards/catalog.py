"""The catalog: an institution's rewards, kept by its admins, and every change of their stock with who and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from services.rewards.models import Reward, StockMovement
from shared import clock
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError

EDITABLE = ("name", "description", "image_url", "points_cost", "per_user_limit", "available_from", "available_to",
            "active")


def reward_view(reward: Reward) -> dict[str, Any]:
    return {
        "id": reward.id,
        "institution_id": reward.institution_id,
        "name": reward.name,
        "description": reward.description,
        "points_cost": reward.points_cost,
        "stock": reward.stock,
        "stock_received": reward.stock_received,
        "per_user_limit": reward.per_user_limit,
        "available_from": reward.available_from,
        "available_to": reward.available_to,
        "image_url": reward.image_url,
        "active": reward.active,
        "available": is_available(reward, clock.now()),
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
    }


def movement_view(movement: StockMovement) -> dict[str, Any]:
    return {
        "id": movement.id,
        "reward_id": movement.reward_id,
        "kind": movement.kind,
        "delta": movement.delta,
        "stock_after": movement.stock_after,
        "reason": movement.reason,
        "actor": movement.actor,
        "redemption_id": movement.redemption_id,
        "created_at": movement.created_at,
    }


def is_available(reward: Reward, at: datetime) -> bool:
    """Offered at ``at``: active and inside its availability window (stock aside)."""
    return (
        reward.active
        and (reward.available_from is None or clock.as_utc(reward.available_from) <= at)
        and (reward.available_to is None or at < clock.as_utc(reward.available_to))
    )


def _check_window(available_from: datetime | None, available_to: datetime | None) -> None:
    if available_from is not None and available_to is not None and available_to <= available_from:
        raise ApiError(422, "validation_error", "结束时间须晚于开始时间",
                       errors={"available_to": ["须晚于 available_from"]})


def move_stock(session: Session, reward_id: int, kind: str, delta: int, reason: str, actor: str,
               redemption_id: int | None = None) -> int | None:
    """Move a reward's stock by ``delta`` with one conditional update (never below zero) and record why;
    the stock after, or None when there was not enough. ``received`` moves also change what was received."""
    values: dict[str, Any] = {"stock": Reward.stock + delta, "updated_at": clock.now()}
    if kind == "received":
        values["stock_received"] = Reward.stock_received + delta
    stock_after = session.scalar(
        update(Reward)
        .where(Reward.id == reward_id, Reward.stock + delta >= 0)
        .values(**values)
        .returning(Reward.stock)
        .execution_options(synchronize_session=False)
    )
    if stock_after is None:
        return None
    session.add(StockMovement(reward_id=reward_id, kind=kind, delta=delta, stock_after=stock_after, reason=reason,
                              actor=actor, redemption_id=redemption_id, created_at=clock.now()))
    return stock_after


class Catalog:
    def __init__(self, db: Database):
        self.db = db

    def create(self, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        principal.ensure_institution(data["institution_id"])
        _check_window(data["available_from"], data["available_to"])
        with self.db.uow() as uow:
            reward = Reward(
                institution_id=data["institution_id"], name=data["name"], description=data["description"],
                image_url=data["image_url"], points_cost=data["points_cost"], stock=0, stock_received=0,
                per_user_limit=data["per_user_limit"], available_from=data["available_from"],
                available_to=data["available_to"], active=True, created_by=principal.subject,
                created_at=clock.now(), updated_at=clock.now(),
            )
            uow.session.add(reward)
            uow.session.flush()
            if data["stock"]:
                move_stock(uow.session, reward.id, "received", data["stock"], "初始库存", principal.subject)
            uow.commit()
            uow.session.refresh(reward)
            return reward_view(reward)

    def _reward_for_admin(self, session: Session, principal: Principal, reward_id: int, lock: bool = False
                          ) -> Reward:
        reward = session.get(Reward, reward_id, with_for_update=lock)
        if reward is None:
            raise ApiError(404, "reward_not_found", "奖品不存在")
        principal.ensure_institution(reward.institution_id)
        return reward

    def update(self, principal: Principal, reward_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        with self.db.uow() as uow:
            reward = self._reward_for_admin(uow.session, principal, reward_id, lock=True)
            for name in EDITABLE:
                if name in changes:
                    setattr(reward, name, changes[name])
            _check_window(reward.available_from, reward.available_to)
            reward.updated_at = clock.now()
            uow.commit()
            return reward_view(reward)

    def adjust_stock(self, principal: Principal, reward_id: int, delta: int, reason: str) -> dict[str, Any]:
        """Put stock in (or take it out, say after a count): never below what is left to reserve."""
        with self.db.uow() as uow:
            self._reward_for_admin(uow.session, principal, reward_id)
            if move_stock(uow.session, reward_id, "received", delta, reason, principal.subject) is None:
                raise ApiError(409, "stock_insufficient", "库存不足，无法减少这么多",
                               errors={"delta": ["超过现有库存"]})
            uow.commit()
            reward = uow.session.get(Reward, reward_id, populate_existing=True)
            return reward_view(reward)

    def get(self, principal: Principal, reward_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            reward = uow.session.get(Reward, reward_id)
            if reward is None or not principal.can_access_institution(reward.institution_id) or (
                    not principal.is_admin and not reward.active):
                raise ApiError(404, "reward_not_found", "奖品不存在")
            return reward_view(reward)

    def list(self, principal: Principal, institution_id: int | None, limit: int, after: int | None
             ) -> list[dict[str, Any]]:
        """An employee sees what their institution offers now; an admin every item, offered or not."""
        if not principal.is_admin:
            principal.ensure_bound()
        institution_id = principal.institution_in_scope(institution_id)
        now = clock.now()
        query = select(Reward).where(Reward.institution_id == institution_id)
        if not principal.is_admin:
            query = query.where(
                Reward.active.is_(True),
                or_(Reward.available_from.is_(None), Reward.available_from <= now),
                or_(Reward.available_to.is_(None), Reward.available_to > now),
            )
        if after is not None:
            query = query.where(Reward.id > after)
        with self.db.reader() as uow:
            return [reward_view(r) for r in uow.session.scalars(query.order_by(Reward.id).limit(limit))]

    def movements(self, principal: Principal, reward_id: int, limit: int, after: int | None) -> list[dict[str, Any]]:
        """The reward's stock movements, newest first, continuing past movement ``after`` (older ones)."""
        with self.db.reader() as uow:
            self._reward_for_admin(uow.session, principal, reward_id)
            query = select(StockMovement).where(StockMovement.reward_id == reward_id)
            if after is not None:
                query = query.where(StockMovement.id < after)
            rows = uow.session.scalars(query.order_by(StockMovement.id.desc()).limit(limit))
            return [movement_view(m) for m in rows]
