"""Events exchanged between services through the outbox and RQ queues, and who consumes each.

Events are facts in the past tense. They travel as JSON: ``{"event_id", "type", "occurred_at", "data"}``.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from shared import clock


@dataclass(frozen=True, kw_only=True)
class Event:
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = field(default_factory=clock.now)

    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls

    @property
    def type(self) -> str:
        return type(self).__name__

    def data(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("event_id", "occurred_at")
        }

    def to_message(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "data": self.data(),
        }

    @staticmethod
    def from_message(message: dict[str, Any]) -> Event:
        """Rebuild an event; fields a newer producer added are ignored, so consumers can lag behind."""
        cls = Event.registry.get(message.get("type", ""))
        if cls is None:
            raise ValueError(f"unknown event type {message.get('type')!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        occurred_at = datetime.fromisoformat(message["occurred_at"])
        if occurred_at.tzinfo is None:
            raise ValueError("occurred_at has no time zone")
        if not isinstance(message["event_id"], str) or not isinstance(message["data"], dict):
            raise ValueError("event_id must be a string and data an object")
        return cls(
            event_id=message["event_id"],
            occurred_at=occurred_at,
            **{k: v for k, v in message["data"].items() if k in known},
        )


@dataclass(frozen=True, kw_only=True)
class EmployeeFacts(Event):
    """Who a bound employee is, as the services that rank or serve employees need to know."""

    user_id: int
    institution_id: int
    department_id: int | None
    employee_no: str
    nickname: str


@dataclass(frozen=True, kw_only=True)
class EmployeeBound(EmployeeFacts):
    """A WeChat user was bound to a roster entry."""


@dataclass(frozen=True, kw_only=True)
class EmployeeUpdated(EmployeeFacts):
    """A bound employee's department or nickname changed (a roster re-import)."""


@dataclass(frozen=True, kw_only=True)
class DepartmentsChanged(Event):
    """An institution's departments as they are now: names and roster headcounts (after a department is added
    or a roster imported). A whole snapshot, so the newest one wins whatever the order of delivery."""

    institution_id: int
    institution_name: str
    departments: list[dict[str, Any]]  # [{"id": int, "name": str, "headcount": int}]


@dataclass(frozen=True, kw_only=True)
class ActionRecorded(Event):
    """A green action was accepted (at once, or approved after review): points credits it once, under the rule
    version in force at ``action_at``. Quantities travel as decimal strings so no float rounding creeps in."""

    action_id: int
    user_id: int
    institution_id: int
    department_id: int | None
    action_type: str  # commute | clean_plate | waste_sorting | ev_charging
    variant: str  # the commute mode; "default" for the other types
    quantity: str  # in ``unit``: "10.5" km, "1" meal, "1" check_in, "23.4" kwh
    unit: str
    action_at: str  # RFC 3339, when the action happened


@dataclass(frozen=True, kw_only=True)
class ActionReversed(Event):
    """An admin rejected an action that had been accepted: points reverses its award with a compensating entry."""

    action_id: int
    user_id: int
    institution_id: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class RuleVersionPublished(Event):
    """A rule version exists (new, or installed by default): activities keeps the limits it validates with."""

    rule_id: int
    action_type: str
    institution_id: int | None  # None: the province default
    version: int
    effective_from: str  # RFC 3339
    effective_to: str | None
    unit: str
    variants: dict[str, Any]  # {"<mode or default>": {"carbon_g_per_unit": int, "max_quantity_per_action"?: num}}
    max_quantity_per_action: str | None
    daily_count_limit: int | None
    claim_window_days: int


@dataclass(frozen=True, kw_only=True)
class DebitRequested(Event):
    """Rewards reserved stock for a redemption and asks points to debit its cost. Sent again (a new event, the
    same ``redemption_id``) while the redemption waits for an answer: points decides once per redemption and
    repeats that decision."""

    redemption_id: int
    user_id: int
    institution_id: int
    reward_id: int
    points: int
    attempt: int = 1


@dataclass(frozen=True, kw_only=True)
class PointsDebited(Event):
    """Points took a redemption's cost from the balance: rewards confirms it with a pickup code."""

    redemption_id: int
    user_id: int
    points: int
    entry_id: int
    balance_after: int


@dataclass(frozen=True, kw_only=True)
class DebitRejected(Event):
    """Points refused a redemption's debit (``insufficient_points``): rewards rejects it and releases the stock."""

    redemption_id: int
    user_id: int
    reason: str
    balance: int


@dataclass(frozen=True, kw_only=True)
class RefundRequested(Event):
    """A confirmed redemption was cancelled or expired: points gives its debit back, once."""

    redemption_id: int
    user_id: int
    institution_id: int
    points: int
    reason: str  # cancelled | expired


@dataclass(frozen=True, kw_only=True)
class PointsRefunded(Event):
    """Points gave a redemption's debit back: rewards notes when."""

    redemption_id: int
    user_id: int
    points: int
    entry_id: int


# Which services consume each event type. The producer's outbox writes one row per consumer.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "EmployeeBound": ("points", "activities"),
    "EmployeeUpdated": ("points", "activities"),
    "DepartmentsChanged": ("points",),
    "ActionRecorded": ("points",),
    "ActionReversed": ("points",),
    "RuleVersionPublished": ("activities",),
    "DebitRequested": ("points",),
    "RefundRequested": ("points",),
    "PointsDebited": ("rewards",),
    "DebitRejected": ("rewards",),
    "PointsRefunded": ("rewards",),
}


def consumers_of(event: Event) -> tuple[str, ...]:
    return SUBSCRIPTIONS.get(event.type, ())
