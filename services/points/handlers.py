"""The points service's event handlers, one registry."""

from __future__ import annotations

from services.points.models import Member
from shared.db import UnitOfWork
from shared.events import EmployeeFacts


def remember_member(uow: UnitOfWork, event: EmployeeFacts) -> None:
    """Record (or update) who the employee is, for receipts and boards."""
    member = uow.session.get(Member, event.user_id)
    if member is None:
        member = Member(user_id=event.user_id)
        uow.session.add(member)
    member.institution_id = event.institution_id
    member.department_id = event.department_id
    member.employee_no = event.employee_no
    member.nickname = event.nickname
    if member.bound_at is None:
        member.bound_at = event.occurred_at


HANDLERS = {"EmployeeBound": remember_member, "EmployeeUpdated": remember_member}
