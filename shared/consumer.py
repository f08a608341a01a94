"""Idempotent consumption: an event's effect and its "processed" mark commit together, once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError

from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.infra_models import InfraModels
from shared.metrics import EVENTS_CONSUMED

log = logging.getLogger("lvbao.consumer")

Handler = Callable[[UnitOfWork, Any], None]


def consume(
    service: str,
    db: Database,
    models: InfraModels,
    handlers: Mapping[str, Handler],
    messages: list[dict[str, Any]],
) -> dict[str, int]:
    """Apply each message at most once; returns counts of applied, duplicate and ignored messages.

    A handler that raises fails the job (RQ retries it); messages applied before it stay applied and are
    skipped as duplicates on the retry.
    """
    counts = {"applied": 0, "duplicate": 0, "ignored": 0}
    for message in messages:
        event = Event.from_message(message)
        handler = handlers.get(event.type)
        if handler is None:
            counts["ignored"] += 1
            EVENTS_CONSUMED.labels(service, event.type, "ignored").inc()
            continue
        with db.uow() as uow:
            uow.session.add(models.processed(event_id=event.event_id, event_type=event.type))
            try:
                # The primary key is the guard: a concurrent or repeated delivery fails here (or waits for
                # the first delivery's transaction and then fails).
                uow.session.flush()
            except IntegrityError:
                uow.rollback()
                counts["duplicate"] += 1
                EVENTS_CONSUMED.labels(service, event.type, "duplicate").inc()
                continue
            handler(uow, event)
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()
                if not _already_processed(db, models, event.event_id):
                    raise
                # A concurrent delivery of the same event committed first.
                counts["duplicate"] += 1
                EVENTS_CONSUMED.labels(service, event.type, "duplicate").inc()
                continue
        counts["applied"] += 1
        EVENTS_CONSUMED.labels(service, event.type, "applied").inc()
    log.info("events consumed", extra={"service": service, **counts})
    return counts


def _already_processed(db: Database, models: InfraModels, event_id: str) -> bool:
    with db.uow() as uow:
        return uow.session.get(models.processed, event_id) is not None


def events_job(service: str, runtime: Any, models: InfraModels, handlers: Mapping[str, Handler]):
    """The ``handle_events`` RQ job of a service: its queue's one entry point (see shared.outbox.handler_path)."""

    def handle_events(messages: list[dict[str, Any]]) -> dict[str, int]:
        return consume(service, runtime.db, models, handlers, messages)

    handle_events.__qualname__ = handle_events.__name__ = "handle_events"
    handle_events.__module__ = f"services.{service}.tasks"
    return handle_events
