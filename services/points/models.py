"""The points service's tables: members, rule versions, accounts and the append-only ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.points.config import SCHEMA
from shared.clock import now
from shared.db import UtcDateTime, make_base
from shared.infra_models import BigId, make_infra_models

Base = make_base(SCHEMA)
infra = make_infra_models(Base)

LEDGER_KINDS = ("award", "debit", "refund", "reversal", "adjustment", "expiry")


class Member(Base):
    """An employee as the boards know them: nickname and department, learnt from ``EmployeeBound``."""

    __tablename__ = "members"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    department_id: Mapped[int | None] = mapped_column(Integer)
    employee_no: Mapped[str] = mapped_column(String(32))
    nickname: Mapped[str] = mapped_column(String(32))
    # When the facts applied here were true: an older event arriving late changes nothing.
    facts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bound_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Rule(Base):
    """One version of one action type's rule, province-wide (``institution_id`` NULL) or an institution's.

    Rows are only ever inserted: a change is a new version with its own ``effective_from``.
    """

    __tablename__ = "rules"
    __table_args__ = (
        # NULLs are never equal, so the scope is a real column: the institution, or 0 for the province default.
        UniqueConstraint("action_type", "scope_key", "version"),
        CheckConstraint("g_per_point > 0", name="g_per_point_positive"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("scope_key = coalesce(institution_id, 0)", name="scope_key_matches"),
        Index("ix_rules_in_force", "action_type", "scope_key", "effective_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_type: Mapped[str] = mapped_column(String(32))
    institution_id: Mapped[int | None] = mapped_column(Integer)
    scope_key: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime)
    effective_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unit: Mapped[str] = mapped_column(String(16))
    variants: Mapped[dict[str, Any]] = mapped_column(JSON)
    g_per_point: Mapped[int] = mapped_column(Integer)
    max_quantity_per_action: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    daily_cap_points: Mapped[int | None] = mapped_column(Integer)
    daily_count_limit: Mapped[int | None] = mapped_column(Integer)
    claim_window_days: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    created_by: Mapped[str] = mapped_column(String(128))


class Account(Base):
    """A user's points: the balance (never negative) and running totals, kept with every ledger entry."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_non_negative"),)

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    balance: Mapped[int] = mapped_column(Integer, default=0)
    # Sum of award and reversal entries: what the user earned and kept credit for (boards rank by it).
    lifetime_points: Mapped[int] = mapped_column(Integer, default=0)
    carbon_g: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)


class LedgerEntry(Base):
    """One change of a user's points, with why (its receipt). Rows are never updated nor deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # The last guard against a double credit (or double reversal, debit, refund) of the same thing.
        UniqueConstraint("source_type", "source_id", "kind"),
        CheckConstraint("kind IN ('award', 'debit', 'refund', 'reversal', 'adjustment', 'expiry')", name="kind_known"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_ledger_entries_user_day_type", "user_id", "local_day", "action_type"),
        Index("ix_ledger_entries_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer)
    institution_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer)
    carbon_g: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    action_type: Mapped[str | None] = mapped_column(String(32))
    # The Asia/Shanghai date of the action (awards and reversals): daily caps and day/week totals use it.
    local_day: Mapped[date | None] = mapped_column(Date)
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON)
    event_id: Mapped[str | None] = mapped_column(String(64))


class RedemptionDebit(Base):
    """Points' one decision about a redemption's debit (debited or rejected), repeated to whoever asks again,
    so a redemption asked about twice can never be debited after it was refused, nor refused after it was
    debited."""

    __tablename__ = "redemption_debits"
    __table_args__ = (CheckConstraint("outcome IN ('debited', 'rejected')", name="outcome_known"),)

    redemption_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    balance: Mapped[int] = mapped_column(Integer)  # after the debit; the balance that fell short, if rejected
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    refund_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
