"""The rewards service's tables: the catalog, every stock movement, redemptions and the per-user limit slots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.rewards.config import SCHEMA
from shared.clock import now
from shared.db import UtcDateTime, make_base
from shared.infra_models import BigId, make_infra_models

Base = make_base(SCHEMA)
infra = make_infra_models(Base)

REDEMPTION_STATUSES = ("pending", "confirmed", "rejected", "fulfilled", "cancelled", "expired")
# Redemptions that hold a unit of stock (and a per-user limit slot): reserved, waiting at the counter, handed out.
HOLDING_STATUSES = ("pending", "confirmed", "fulfilled")
REJECTION_REASONS = ("insufficient_points", "out_of_stock", "limit_reached")


class Reward(Base):
    """An item of an institution's catalog. ``stock`` is what can still be reserved; ``stock_received`` what
    admins have put in (net of their corrections), so ``stock`` + holding redemptions = ``stock_received``."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
        CheckConstraint("per_user_limit IS NULL OR per_user_limit > 0", name="per_user_limit_positive"),
        Index("ix_rewards_institution_active", "institution_id", "active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str | None] = mapped_column(String(500))
    points_cost: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    stock_received: Mapped[int] = mapped_column(Integer)
    per_user_limit: Mapped[int | None] = mapped_column(Integer)
    available_from: Mapped[datetime | None] = mapped_column(UtcDateTime)
    available_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    created_by: Mapped[str] = mapped_column(String(128))


class StockMovement(Base):
    """One change of a reward's stock, with who and why. Rows are never updated nor deleted.

    ``kind``: ``received`` (an admin's delta, the initial stock included), ``reserved`` (a redemption took one),
    ``released`` (a redemption gave it back: rejected, cancelled or expired).
    """

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint("kind IN ('received', 'reserved', 'released')", name="kind_known"),
        CheckConstraint("stock_after >= 0", name="stock_after_non_negative"),
        # A redemption reserves once and releases at most once.
        UniqueConstraint("redemption_id", "kind"),
        Index("ix_stock_movements_reward_id_id", "reward_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    kind: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int] = mapped_column(Integer)
    stock_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(128))
    redemption_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)


class Redemption(Base):
    """An employee's order of one reward, through the saga: pending -> confirmed (pickup code) -> fulfilled, or
    rejected with a reason, or cancelled / expired with the points given back."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'rejected', 'fulfilled', 'cancelled', 'expired')", name="status_known"
        ),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
        Index("ix_redemptions_user_id_id", "user_id", "id"),
        Index("ix_redemptions_institution_id_id", "institution_id", "id"),
        Index("ix_redemptions_status_requested_at", "status", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    institution_id: Mapped[int] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    reward_name: Mapped[str] = mapped_column(String(100))
    points_cost: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    # The secret part of the pickup code (its MAC is computed from it; see services.rewards.pickup).
    pickup_nonce: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
    # When points was last asked to debit (pending redemptions are asked again until it answers).
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    request_attempts: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fulfilled_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # cancelled or expired
    refunded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    debit_entry_id: Mapped[int | None] = mapped_column(Integer)
    refund_entry_id: Mapped[int | None] = mapped_column(Integer)


class LimitSlot(Base):
    """One of a user's ``per_user_limit`` places for one reward, held by a redemption that holds stock. The
    primary key is the database's last guard: however requests race, no user holds more places than the limit
    allows (slots are numbered 1..limit)."""

    __tablename__ = "limit_slots"
    __table_args__ = (CheckConstraint("slot >= 1", name="slot_positive"),)

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    reward_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    redemption_id: Mapped[int] = mapped_column(Integer, unique=True)
