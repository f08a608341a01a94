"""Institutions and their departments, kept by the province admin and each institution's admins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.gateway.models import Department, Institution, RosterEntry, infra
from services.gateway.service import lock_institution
from shared.auth.guards import Principal
from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.events import DepartmentsChanged
from shared.outbox import record_event


def institution_view(row: Institution) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "code": row.code, "created_at": row.created_at}


def department_view(row: Department) -> dict[str, Any]:
    return {"id": row.id, "institution_id": row.institution_id, "name": row.name, "code": row.code}


def institution_for(uow: UnitOfWork, principal: Principal, institution_id: int) -> Institution:
    """The institution the caller administers (403 for another one, 404 for none)."""
    principal.ensure_institution(institution_id)
    institution = uow.session.get(Institution, institution_id)
    if institution is None:
        raise ApiError(404, "institution_not_found", "单位不存在")
    return institution


def announce_departments(uow: UnitOfWork, institution: Institution) -> None:
    """Tell the boards the institution's departments and roster headcounts as they are in this transaction
    (the caller holds the institution's lock, so snapshots are announced in the order they were taken)."""
    counts = dict(uow.session.execute(
        select(RosterEntry.department_id, func.count())
        .where(RosterEntry.institution_id == institution.id)
        .group_by(RosterEntry.department_id)
    ).all())
    departments = uow.session.scalars(
        select(Department).where(Department.institution_id == institution.id).order_by(Department.id))
    record_event(uow, infra, DepartmentsChanged(
        institution_id=institution.id, institution_name=institution.name,
        departments=[{"id": d.id, "name": d.name, "headcount": counts.get(d.id, 0)} for d in departments],
    ))


class Institutions:
    def __init__(self, db: Database):
        self.db = db

    def create(self, name: str, code: str) -> dict[str, Any]:
        with self.db.uow() as uow:
            row = Institution(name=name, code=code)
            uow.session.add(row)
            try:
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "institution_code_taken", "单位编码已存在", errors={"code": ["已被使用"]}) from exc
            return institution_view(row)

    def list(self, principal: Principal, after: int | None, limit: int) -> list[dict[str, Any]]:
        """The institutions the caller administers (all, for the province admin), continuing past ``after``."""
        with self.db.reader() as uow:
            query = select(Institution).where(Institution.id > (after or 0)).order_by(Institution.id).limit(limit)
            if not principal.is_province_admin:
                query = query.where(Institution.id == principal.institution_id)
            return [institution_view(r) for r in uow.session.scalars(query)]

    def get(self, principal: Principal, institution_id: int) -> dict[str, Any]:
        with self.db.reader() as uow:
            return institution_view(institution_for(uow, principal, institution_id))

    def create_department(self, principal: Principal, institution_id: int, name: str, code: str) -> dict[str, Any]:
        with self.db.uow() as uow:
            institution = institution_for(uow, principal, institution_id)
            lock_institution(uow, institution_id)
            row = Department(institution_id=institution_id, name=name, code=code)
            uow.session.add(row)
            try:
                uow.session.flush()
                announce_departments(uow, institution)
                uow.commit()
            except IntegrityError as exc:
                raise ApiError(409, "department_code_taken", "部门编码已存在", errors={"code": ["已被使用"]}) from exc
            return department_view(row)

    def departments(self, principal: Principal, institution_id: int) -> list[dict[str, Any]]:
        with self.db.reader() as uow:
            institution_for(uow, principal, institution_id)
            rows = uow.session.scalars(
                select(Department).where(Department.institution_id == institution_id).order_by(Department.id)
            )
            return [department_view(r) for r in rows]
