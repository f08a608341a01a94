"""The activities service's event handlers, one registry: rule limits from points, employees from the gateway."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from services.activities.limits import limits_cache
from services.activities.models import Member, RuleLimit
from shared.db import UnitOfWork
from shared.events import EmployeeFacts, RuleVersionPublished


def remember_rule_limits(uow: UnitOfWork, event: RuleVersionPublished) -> None:
    """Keep a rule version's limits; versions are never rewritten, so the first copy stands."""
    if uow.session.get(RuleLimit, event.rule_id) is not None:
        return
    uow.after_commit(limits_cache.invalidate)
    uow.session.add(
        RuleLimit(
            rule_id=event.rule_id,
            action_type=event.action_type,
            institution_id=event.institution_id,
            version=event.version,
            effective_from=datetime.fromisoformat(event.effective_from),
            effective_to=datetime.fromisoformat(event.effective_to) if event.effective_to else None,
            unit=event.unit,
            variants=event.variants,
            max_quantity_per_action=(
                Decimal(str(event.max_quantity_per_action)) if event.max_quantity_per_action is not None else None
            ),
            daily_count_limit=event.daily_count_limit,
            claim_window_days=event.claim_window_days,
        )
    )


def remember_member(uow: UnitOfWork, event: EmployeeFacts) -> None:
    """Who an employee number belongs to; newer facts win whatever the delivery order."""
    member = uow.session.get(Member, event.user_id)
    if member is None:
        uow.session.add(
            Member(
                user_id=event.user_id,
                institution_id=event.institution_id,
                department_id=event.department_id,
                employee_no=event.employee_no,
                facts_at=event.occurred_at,
            )
        )
        return
    if member.facts_at > event.occurred_at:
        return
    member.institution_id = event.institution_id
    member.department_id = event.department_id
    member.employee_no = event.employee_no
    member.facts_at = event.occurred_at


HANDLERS = {
    "RuleVersionPublished": remember_rule_limits,
    "EmployeeBound": remember_member,
    "EmployeeUpdated": remember_member,
}
