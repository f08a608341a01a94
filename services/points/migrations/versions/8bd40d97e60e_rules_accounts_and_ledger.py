"""rules, accounts and ledger

Rule versions (only ever inserted), accounts whose balance the database keeps non-negative, and the
append-only ledger whose unique (source_type, source_id, kind) is the last guard against a double credit.

Revision ID: 8bd40d97e60e
Revises: 9e7ab20c99fc
Create Date: 2026-11-24 09:00:22.531635
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8bd40d97e60e"
down_revision: str | None = "9e7ab20c99fc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_type", sa.String(length=32), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("scope_key", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("g_per_point", sa.Integer(), nullable=False),
        sa.Column("max_quantity_per_action", sa.Numeric(precision=12, scale=3), nullable=True),
        sa.Column("daily_cap_points", sa.Integer(), nullable=True),
        sa.Column("daily_count_limit", sa.Integer(), nullable=True),
        sa.Column("claim_window_days", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint("g_per_point > 0", name=op.f("ck_rules_g_per_point_positive")),
        sa.CheckConstraint("scope_key = coalesce(institution_id, 0)", name=op.f("ck_rules_scope_key_matches")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_rules_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint(
            "action_type", "scope_key", "version", name=op.f("uq_rules_action_type_scope_key_version")
        ),
        schema="points",
    )
    op.create_index(
        "ix_rules_in_force", "rules", ["action_type", "scope_key", "effective_from"], unique=False, schema="points"
    )
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("lifetime_points", sa.Integer(), nullable=False),
        sa.Column("carbon_g", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_accounts_balance_non_negative")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_accounts")),
        schema="points",
    )
    op.create_index(
        op.f("ix_points_accounts_institution_id"), "accounts", ["institution_id"], unique=False, schema="points"
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("carbon_g", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action_type", sa.String(length=32), nullable=True),
        sa.Column("local_day", sa.Date(), nullable=True),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("receipt", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "kind IN ('award', 'debit', 'refund', 'reversal', 'adjustment', 'expiry')",
            name=op.f("ck_ledger_entries_kind_known"),
        ),
        sa.CheckConstraint("balance_after >= 0", name=op.f("ck_ledger_entries_balance_after_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint(
            "source_type", "source_id", "kind", name=op.f("uq_ledger_entries_source_type_source_id_kind")
        ),
        schema="points",
    )
    op.create_index(
        "ix_ledger_entries_user_day_type",
        "ledger_entries",
        ["user_id", "local_day", "action_type"],
        unique=False,
        schema="points",
    )
    op.create_index("ix_ledger_entries_user_id_id", "ledger_entries", ["user_id", "id"], unique=False, schema="points")


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_user_id_id", table_name="ledger_entries", schema="points")
    op.drop_index("ix_ledger_entries_user_day_type", table_name="ledger_entries", schema="points")
    op.drop_table("ledger_entries", schema="points")
    op.drop_index(op.f("ix_points_accounts_institution_id"), table_name="accounts", schema="points")
    op.drop_table("accounts", schema="points")
    op.drop_index("ix_rules_in_force", table_name="rules", schema="points")
    op.drop_table("rules", schema="points")
