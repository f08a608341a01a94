"""Redemptions, the admin's side: the institution's redemptions, their CSV export, and handing rewards over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from services.rewards import pickup
from services.rewards.models import Redemption
from services.rewards.redemptions import RedemptionViews
from shared import clock
from shared.auth.guards import Principal
from shared.config import Settings
from shared.db import Database
from shared.errors import ApiError


class Fulfilment(RedemptionViews):
    def __init__(self, db: Database, settings: Settings):
        super().__init__(settings)
        self.db = db

    def _query(self, principal: Principal, filters: dict[str, Any]):
        institution_id = principal.institution_in_scope(filters.get("institution_id"))
        query = select(Redemption).where(Redemption.institution_id == institution_id)
        for name in ("status", "reward_id", "user_id"):
            if filters.get(name) is not None:
                query = query.where(getattr(Redemption, name) == filters[name])
        if filters.get("from_") is not None:
            query = query.where(Redemption.created_at >= filters["from_"])
        if filters.get("to") is not None:
            query = query.where(Redemption.created_at < filters["to"])
        return query

    def list(self, principal: Principal, filters: dict[str, Any], limit: int, after: int | None
             ) -> list[dict[str, Any]]:
        """The institution's redemptions, filtered, newest first, continuing past redemption ``after``."""
        query = self._query(principal, filters)
        if after is not None:
            query = query.where(Redemption.id < after)
        with self.db.reader() as uow:
            return [self.view(r) for r in uow.session.scalars(query.order_by(Redemption.id.desc()).limit(limit))]

    def rows_for_export(self, principal: Principal, filters: dict[str, Any], batch: int = 1000
                        ) -> Iterator[dict[str, Any]]:
        """Every matching redemption, oldest first, read in batches (the query is checked before the first)."""
        query = self._query(principal, filters)

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

    def fulfil(self, principal: Principal, code: str) -> dict[str, Any]:
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
            if not principal.can_access_institution(redemption.institution_id):
                raise ApiError(403, "forbidden_institution", "这是其他单位的取货码")
            if redemption.status == "fulfilled":
                raise ApiError(409, "pickup_code_used", "该取货码已使用")
            if redemption.status == "cancelled":
                raise ApiError(409, "redemption_cancelled", "该兑换已取消")
            expires_at = self.expires_at(redemption)
            if redemption.status == "expired" or (expires_at is not None and clock.now() >= expires_at):
                raise ApiError(410, "pickup_expired", "取货码已过期，积分已退回或将退回")
            redemption.status, redemption.fulfilled_at = "fulfilled", clock.now()
            redemption.fulfilled_by = principal.subject
            uow.commit()
            return self.view(redemption)
