"""What the rules allow, as activities checks it: the rule version in force, and per-user serialisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from services.activities.models import RuleLimit

UNITS = {"commute": "km", "clean_plate": "meal", "waste_sorting": "check_in", "ev_charging": "kwh"}
COMMUTE_MODES = ("walk", "bike", "bus", "metro", "carpool", "ev")
# Until the points service has published a rule for a type (a fresh install), actions are checked against this.
DEFAULT_CLAIM_WINDOW_DAYS = 7


@dataclass(frozen=True)
class Limits:
    """The limits of the rule version in force for one action type, institution and moment."""

    rule_id: int | None
    max_quantity: Decimal | None
    daily_count_limit: int | None
    claim_window_days: int

    @classmethod
    def of(cls, row: RuleLimit | None, variant: str) -> Limits:
        if row is None:
            return cls(None, None, None, DEFAULT_CLAIM_WINDOW_DAYS)
        per_variant = (row.variants or {}).get(variant) or {}
        variant_max = per_variant.get("max_quantity_per_action")
        max_quantity = Decimal(str(variant_max)) if variant_max is not None else row.max_quantity_per_action
        return cls(row.rule_id, max_quantity, row.daily_count_limit, row.claim_window_days)


def limits_in_force(session: Session, action_type: str, institution_id: int, at: datetime, variant: str) -> Limits:
    """The institution's own version in force at ``at`` if it has one, else the province default's; within a
    scope, the highest version that has started and not ended."""
    rows = session.scalars(
        select(RuleLimit)
        .where(
            RuleLimit.action_type == action_type,
            or_(RuleLimit.institution_id == institution_id, RuleLimit.institution_id.is_(None)),
            RuleLimit.effective_from <= at,
            or_(RuleLimit.effective_to.is_(None), RuleLimit.effective_to > at),
        )
        .order_by(RuleLimit.institution_id.is_(None), RuleLimit.version.desc())
        .limit(1)
    ).first()
    return Limits.of(rows, variant)


def lock_user(session: Session, user_id: int) -> None:
    """Serialise one user's action recording (counts, overlaps, slots) for the rest of the transaction.

    PostgreSQL: a transaction-scoped advisory lock in the activities namespace. SQLite: writers are already
    serialised by ``BEGIN IMMEDIATE``. The unique claims stay the last guard either way.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :user_id)"), {"ns": 0x4C42, "user_id": user_id})
