"""Tables every service has in its own schema: the outbox, processed events, idempotency keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.clock import now
from shared.db import UtcDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class InfraModels:
    outbox: type[Any]
    processed: type[Any]
    idempotency: type[Any]


def make_infra_models(base: type[DeclarativeBase]) -> InfraModels:
    class OutboxMessage(base):  # type: ignore[misc, valid-type]
        """An event for one consumer, written in the transaction that caused it, kept until acknowledged."""

        __tablename__ = "outbox"
        __table_args__ = (
            UniqueConstraint("event_id", "destination"),
            Index(
                "ix_outbox_unpublished",
                "id",
                postgresql_where=text("published_at IS NULL"),
                sqlite_where=text("published_at IS NULL"),
            ),
            Index(
                "ix_outbox_unacked",
                "published_at",
                postgresql_where=text("acked_at IS NULL"),
                sqlite_where=text("acked_at IS NULL"),
            ),
        )

        id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
        event_id: Mapped[str] = mapped_column(String(64))
        event_type: Mapped[str] = mapped_column(String(64))
        destination: Mapped[str] = mapped_column(String(32))
        message: Mapped[dict] = mapped_column(JSON)
        created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
        published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
        # Set when the consumer says it is done with the event; until then the relay re-sends it now and then.
        acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
        # The RQ job that carries it: re-sent only once that job is gone or has failed for good.
        job_id: Mapped[str | None] = mapped_column(String(64))
        attempts: Mapped[int] = mapped_column(Integer, default=0)
        last_error: Mapped[str | None] = mapped_column(Text)

    class ProcessedEvent(base):  # type: ignore[misc, valid-type]
        """An event this service has applied; the primary key makes a re-delivery change nothing."""

        __tablename__ = "processed_events"

        event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
        event_type: Mapped[str] = mapped_column(String(64))
        processed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)

    class IdempotencyRecord(base):  # type: ignore[misc, valid-type]
        """A client's Idempotency-Key: the request it stood for and, once done, the response to replay."""

        __tablename__ = "idempotency_keys"
        __table_args__ = (UniqueConstraint("principal", "key"),)

        id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
        principal: Mapped[str] = mapped_column(String(128))
        key: Mapped[str] = mapped_column(String(255))
        fingerprint: Mapped[str] = mapped_column(String(64))
        state: Mapped[str] = mapped_column(String(16))
        response_status: Mapped[int | None] = mapped_column(Integer)
        response_body: Mapped[str | None] = mapped_column(Text)
        created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
        locked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=now)
        # Who holds the key now: only that request may complete or release it (a takeover fences the old one).
        claim: Mapped[str] = mapped_column(String(32))
        response_headers: Mapped[dict | None] = mapped_column(JSON)

    return InfraModels(outbox=OutboxMessage, processed=ProcessedEvent, idempotency=IdempotencyRecord)
