"""The points service's event handlers, one registry."""

from __future__ import annotations

from services.points.ledger import award_for_action, reverse_action
from services.points.models import Member
from services.points.wallet import debit_for_redemption, refund_redemption
from shared.db import UnitOfWork
from shared.events import EmployeeBound, EmployeeFacts


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


HANDLERS = {
    "EmployeeBound": remember_member,
    "EmployeeUpdated": remember_member,
    "ActionRecorded": award_for_action,
    "ActionReversed": reverse_action,
    "DebitRequested": debit_for_redemption,
    "RefundRequested": refund_redemption,
}
