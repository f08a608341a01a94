"""Invite codes: how an employee whose phone WeChat cannot match binds to their roster entry."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from services.gateway.config import INVITE_TTL
from services.gateway.institutions import institution_for
from services.gateway.models import Invite, RosterEntry
from services.gateway.service import token_hash
from shared import clock
from shared.auth.guards import Principal
from shared.db import Database
from shared.errors import ApiError

# Invite codes are typed by people: no 0/O or 1/I/L.
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class Invites:
    def __init__(self, db: Database):
        self.db = db

    def create(self, principal: Principal, institution_id: int, employee_no: str) -> dict[str, Any]:
        """A single-use code for one roster entry; only its hash is kept."""
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(10))
        with self.db.uow() as uow:
            institution_for(uow, principal, institution_id)
            entry = uow.session.scalars(
                select(RosterEntry).where(
                    RosterEntry.institution_id == institution_id, RosterEntry.employee_no == employee_no
                )
            ).one_or_none()
            if entry is None:
                raise ApiError(404, "roster_entry_not_found", "名册中没有该工号",
                               errors={"employee_no": ["名册中没有该工号"]})
            if entry.user_id is not None:
                raise ApiError(409, "roster_entry_taken", "该员工已绑定微信账号")
            expires_at = clock.now() + INVITE_TTL
            uow.session.add(Invite(code_hash=token_hash(code), roster_entry_id=entry.id,
                                   created_by=principal.subject, expires_at=expires_at))
            uow.commit()
            return {"invite_code": code, "employee_no": employee_no, "expires_at": expires_at}
