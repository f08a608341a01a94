"""The review queue: implausible actions wait for an admin, principal approves (the action then earns) or rejects
(a credited action is reversed by a compensating ledger entry in points, never edited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.activities.actions import action_view, emit_recorded
from services.activities.models import Action, infra
from shared import clock
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError
from shared.events import ActionReversed
from shared.outbox import record_event


def review_view(action: Action) -> dict[str, Any]:
    return {
        **action_view(action),
        "user_id": action.user_id,
        "department_id": action.department_id,
        "institution_id": action.institution_id,
        "details": action.details or {},
        "reviewed_by": action.reviewed_by,
        "reviewed_at": action.reviewed_at,
        "review_note": action.review_note,
    }


class ReviewService:
    def __init__(self, db: Database):
        self.db = db

    def queue(self, principal: Principal, institution_id: int, status: str, limit: int, after_id: int) -> list[dict]:
        principal.ensure_institution(institution_id)
        with self.db.reader() as uow:
            rows = uow.session.scalars(
                select(Action)
                .where(Action.institution_id == institution_id, Action.status == status, Action.id > after_id)
                .order_by(Action.id)
                .limit(limit)
            ).all()
            return [review_view(a) for a in rows]

    def approve(self, principal: Principal, action_id: int, note: str | None) -> dict[str, Any]:
        with self.db.uow() as uow:
            action = self._locked(uow.session, principal, action_id)
            if action.status != "pending_review":
                raise ApiError(409, "review_not_pending", "该记录不在待审核状态")
            action.status = "accepted"
            self._stamp(action, principal, note)
            emit_recorded(uow, action)
            uow.commit()
            return review_view(action)

    def reject(self, principal: Principal, action_id: int, note: str | None) -> dict[str, Any]:
        with self.db.uow() as uow:
            action = self._locked(uow.session, principal, action_id)
            if action.status == "rejected":
                raise ApiError(409, "review_not_pending", "该记录已被驳回")
            if action.credited:
                record_event(
                    uow,
                    infra,
                    ActionReversed(
                        action_id=action.id,
                        user_id=action.user_id,
                        institution_id=action.institution_id,
                        reason=note or "rejected_by_admin",
                    ),
                )
            action.status = "rejected"
            action.reason = "rejected_by_admin"
            self._stamp(action, principal, note)
            uow.commit()
            return review_view(action)

    @staticmethod
    def _locked(session, principal: Principal, action_id: int) -> Action:
        action = session.scalars(select(Action).where(Action.id == action_id).with_for_update()).first()
        if action is None:
            raise ApiError(404, "action_not_found", "记录不存在")
        principal.ensure_institution(action.institution_id)
        return action

    @staticmethod
    def _stamp(action: Action, principal: Principal, note: str | None) -> None:
        action.reviewed_by = principal.subject
        action.reviewed_at = clock.now()
        action.review_note = note
