"""Who the points service knows: employees and departments as the gateway announces them (event handlers)."""

from __future__ import annotations

from sqlalchemy import delete

from services.points.boards import note_refresh
from services.points.models import Department, Institution, Member
from shared.db import UnitOfWork
from shared.events import DepartmentsChanged, EmployeeBound, EmployeeFacts


def remember_member(uow: UnitOfWork, event: EmployeeFacts) -> None:
    """Record (or update) who the employee is, for receipts and boards; newer facts win, whatever the order."""
    member = uow.session.get(Member, event.user_id)
    if member is None:
        member = Member(user_id=event.user_id, bound_at=event.occurred_at)
        uow.session.add(member)
    if isinstance(event, EmployeeBound) and event.occurred_at < member.bound_at:
        member.bound_at = event.occurred_at  # the binding itself, even when an update arrived first
    if member.facts_at is not None and member.facts_at > event.occurred_at:
        return
    member.facts_at = event.occurred_at
    member.institution_id = event.institution_id
    member.department_id = event.department_id
    member.employee_no = event.employee_no
    member.nickname = event.nickname
    note_refresh(uow.session, "member", event.user_id, event.institution_id)


def remember_departments(uow: UnitOfWork, event: DepartmentsChanged) -> None:
    """Keep an institution's name, departments and headcounts as of the newest snapshot."""
    session = uow.session
    institution = session.get(Institution, event.institution_id)
    if institution is not None and institution.facts_at >= event.occurred_at:
        return  # an older snapshot, delivered late
    if institution is None:
        institution = Institution(id=event.institution_id, facts_at=event.occurred_at)
        session.add(institution)
    institution.name = event.institution_name
    institution.facts_at = event.occurred_at
    session.execute(delete(Department).where(Department.institution_id == event.institution_id))
    session.flush()
    for item in event.departments:
        session.add(Department(id=int(item["id"]), institution_id=event.institution_id, name=str(item["name"]),
                               headcount=int(item["headcount"]), facts_at=event.occurred_at))
    note_refresh(session, "departments", event.institution_id, event.institution_id)
