"""The activities service's tables: stations, green actions and what they are checked against."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.activities.config import SCHEMA
from shared import clock
from shared.db import UtcDateTime, make_base
from shared.infra_models import make_infra_models

Base = make_base(SCHEMA)
infra = make_infra_models(Base)

ACTION_STATUSES = ("accepted", "pending_review", "rejected")


class Station(Base):
    """A canteen tray-return point or a waste-sorting point that shows a rotating signed QR code."""

    __tablename__ = "stations"
    __table_args__ = (CheckConstraint("kind IN ('canteen', 'sorting')", name="station_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # [{"name": "午餐", "start": "11:00", "end": "13:30"}], local time (Asia/Shanghai).
    windows: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    # Signs the station's codes; a new secret invalidates every code shown so far. Never leaves the service.
    qr_secret: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Whether the day codes of a printed sheet are accepted here (for a station without a screen; see shared.qr).
    printed_codes: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=clock.now)


class Action(Base):
    """One green action of one employee. Never deleted; a review changes its status, and a credited action that
    is rejected later is reversed in the ledger by an event, not edited there."""

    __tablename__ = "actions"
    __table_args__ = (
        CheckConstraint("status IN ('accepted', 'pending_review', 'rejected')", name="action_status"),
        CheckConstraint("quantity > 0", name="action_quantity_positive"),
        # A client's retry of one request (same Idempotency-Key) can never make a second action.
        UniqueConstraint("user_id", "idempotency_key", name="uq_actions_user_idempotency_key"),
        # An operator's charging session is recorded once, however often it is reported.
        UniqueConstraint("institution_id", "external_id", name="uq_actions_institution_external_id"),
        Index("ix_actions_user_occurred", "user_id", "occurred_at"),
        Index("ix_actions_review_queue", "institution_id", "status", "id"),
        Index("ix_actions_station_occurred", "station_id", "occurred_at"),  # a station's scans today
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    institution_id: Mapped[int] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))  # commute | clean_plate | waste_sorting | ev_charging
    variant: Mapped[str] = mapped_column(String(16))  # the commute mode, "default" otherwise
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Commutes: the latest the trip can have started (distance at the mode's top speed), for overlap checks.
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # app | scan | operator
    station_id: Mapped[int | None] = mapped_column(ForeignKey(f"{SCHEMA}.stations.id"))
    external_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # True once ActionRecorded went to the outbox: points credits it; a later rejection must reverse it.
    credited: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    review_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=clock.now)


class ActionClaim(Base):
    """A limit an action used up, as a unique key: a code scanned once per user, one clean plate per meal slot,
    the n-th sorting check-in of a day. Concurrent scans race on these keys and exactly one wins."""

    __tablename__ = "action_claims"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    claim_key: Mapped[str] = mapped_column(String(96), primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey(f"{SCHEMA}.actions.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=clock.now)


class RuleLimit(Base):
    """The limits of one rule version, as the points service published them (``RuleVersionPublished``)."""

    __tablename__ = "rule_limits"
    __table_args__ = (Index("ix_rule_limits_lookup", "action_type", "institution_id", "effective_from"),)

    rule_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action_type: Mapped[str] = mapped_column(String(32))
    institution_id: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime)
    effective_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unit: Mapped[str] = mapped_column(String(16))
    variants: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_quantity_per_action: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    daily_count_limit: Mapped[int | None] = mapped_column(Integer)
    claim_window_days: Mapped[int] = mapped_column(Integer)


class Member(Base):
    """A bound employee as charging operators name them (employee number), from the gateway's events."""

    __tablename__ = "members"
    __table_args__ = (Index("ix_members_institution_employee_no", "institution_id", "employee_no"),)

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    institution_id: Mapped[int] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    employee_no: Mapped[str] = mapped_column(String(32))
    facts_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OperatorRequest(Base):
    """Signatures of operator requests seen in the last minutes: a replayed request is refused."""

    __tablename__ = "operator_requests"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
