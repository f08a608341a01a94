"""Keeping the infrastructure tables small: what is done and old enough to be of no more use is deleted."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete

from shared import clock
from shared.db import Database
from shared.infra_models import InfraModels

log = logging.getLogger("lvbao.housekeeping")

# Acknowledged events are kept a week for inspection.
OUTBOX_RETENTION = timedelta(days=7)
# Far longer than any re-delivery can come (at most 10 sendings, 15 minutes apart).
PROCESSED_RETENTION = timedelta(days=30)
# Clients retry within minutes; a day is the usual promise for an Idempotency-Key.
IDEMPOTENCY_RETENTION = timedelta(hours=24)


def prune(db: Database, models: InfraModels) -> dict[str, int]:
    """Delete acknowledged outbox rows, old processed-event marks and expired idempotency keys."""
    now = clock.now()
    with db.uow() as uow:
        counts = {
            "outbox": uow.session.execute(
                delete(models.outbox).where(
                    models.outbox.acked_at.is_not(None), models.outbox.acked_at < now - OUTBOX_RETENTION
                )
            ).rowcount,
            "processed_events": uow.session.execute(
                delete(models.processed).where(models.processed.processed_at < now - PROCESSED_RETENTION)
            ).rowcount,
            "idempotency_keys": uow.session.execute(
                delete(models.idempotency).where(models.idempotency.created_at < now - IDEMPOTENCY_RETENTION)
            ).rowcount,
        }
        uow.commit()
    if any(counts.values()):
        log.info("pruned", extra={"schema": db.schema, **counts})
    return counts
