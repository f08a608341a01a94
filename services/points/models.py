"""The points service's tables: members, rule versions, accounts and the append-only ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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
# Entries that say what a user earned (and kept): day caps, today/week totals, lifetime points and boards sum
# these; debits and refunds move the balance only.
EARNING_KINDS = ("award", "reversal")


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
    # The employee asked not to be shown on boards: still counted for their department, never listed.
    board_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Institution(Base):
    """An institution's name, as the office screen shows it (learnt from ``DepartmentsChanged``)."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(128))
    facts_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Department(Base):
    """A department and its roster headcount: per-capita and participation rankings divide by it."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    institution_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(128))
    headcount: Mapped[int] = mapped_column(Integer)
    facts_at: Mapped[datetime] = mapped_column(UtcDateTime)


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
    # The employee's department when the action was credited: department boards count it there.
    department_id: Mapped[int | None] = mapped_column(Integer)
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


BOARD_UPDATE_KINDS = ("entry", "member", "departments")


class BoardUpdate(Base):
    """Something the boards in Redis have yet to take in, written in the same transaction as its cause.

    ``entry``: a ledger entry to add (``ref_id`` its id; applied once, see services.points.boards);
    ``member``: a user's nickname, department or opt-out to refresh (``ref_id`` the user id);
    ``departments``: an institution's department names (``ref_id`` the institution id).
    A row is deleted once Redis has it; a refresh asked for again while one is pending bumps ``version``, so
    an applier only deletes the version it applied."""

    __tablename__ = "board_updates"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id"),
        CheckConstraint("kind IN ('entry', 'member', 'departments')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int] = mapped_column(BigInteger)
    institution_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
