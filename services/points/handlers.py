"""The points service's event handlers, one registry."""

from services.points.ledger import award_for_action, reverse_action
from services.points.members import remember_departments, remember_member
from services.points.wallet import debit_for_redemption, refund_redemption

HANDLERS = {
    "EmployeeBound": remember_member,
    "EmployeeUpdated": remember_member,
    "DepartmentsChanged": remember_departments,
    "ActionRecorded": award_for_action,
    "ActionReversed": reverse_action,
    "DebitRequested": debit_for_redemption,
    "RefundRequested": refund_redemption,
}
