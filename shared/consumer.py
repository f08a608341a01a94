"""Idempotent consumption: an event's effect and its "processed" mark commit together, once.

After a batch, the consumer acknowledges every message it is done with (applied, already applied, or not its
business) to the producer through Redis; the producer's relay re-sends what stays unacknowledged (see
:mod:`shared.outbox`). A lost acknowledgement only causes a harmless re-delivery. A message that cannot be read
is not acknowledged: after its last re-delivery it stays in the producer's outbox, in PostgreSQL, for people.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from shared import clock
from shared.db import Database, UnitOfWork, insert_for
from shared.events import Event
from shared.infra_models import InfraModels
from shared.metrics import EVENTS_CONSUMED

log = logging.getLogger("lvbao.consumer")

Handler = Callable[[UnitOfWork, Any], None]


def ack_key(producer: str) -> str:
    return f"lvbao:outbox:acks:{producer}"


def dead_letter_key(service: str) -> str:
    return f"lvbao:dead_letters:{service}"


def consume(
    service: str,
    db: Database,
    models: InfraModels,
    handlers: Mapping[str, Handler],
    messages: list[dict[str, Any]],
    redis: Redis | None = None,
    after_batch: Callable[[Database, Redis], Any] | None = None,
) -> dict[str, int]:
    """Apply each message at most once; returns counts of applied, duplicate, ignored and dead messages.

    Each message stands alone: an unreadable one is dead-lettered, a failing handler is recorded, and the rest
    of the batch goes on. If any handler failed, the job fails at the end (RQ retries it; what was applied is
    skipped as a duplicate then) and only the failed messages stay unacknowledged.

    ``after_batch(db, redis)`` runs once the batch's transactions are over (whether or not some failed): the
    place for derived state outside the database (boards), which the handlers leave marked in the database.
    """
    counts = {"applied": 0, "duplicate": 0, "ignored": 0, "dead": 0}
    done: list[dict[str, Any]] = []
    failures: list[str] = []
    if len(messages) > 1:
        messages = _apply_together(service, db, models, handlers, messages, counts, done)
    for message in messages:
        try:
            outcome = _consume_one(service, db, models, handlers, message, redis)
        except Exception as exc:
            log.exception("event handler failed", extra={"service": service, "event_id": _event_id(message)})
            failures.append(f"{_event_id(message)}: {type(exc).__name__}: {exc}")
            continue
        counts[outcome] += 1
        if outcome != "dead":
            done.append(message)
    if after_batch is not None and redis is not None:
        try:
            after_batch(db, redis)
        except Exception:  # what it leaves undone stays marked in the database, for its sweeper
            log.exception("after-batch step failed; its sweeper will finish it", extra={"service": service})
    _acknowledge(service, done, redis)
    log.info("events consumed", extra={"service": service, **counts, "failed": len(failures)})
    if failures:
        raise EventsFailed(failures)
    return counts


class EventsFailed(Exception):
    """Some events of a batch could not be applied (the others were); RQ retries the job."""

    def __init__(self, failures: list[str]):
        super().__init__(f"{len(failures)} event(s) failed: " + "; ".join(failures[:5]))
        self.failures = failures


def _apply_together(service, db, models, handlers, messages, counts, done) -> list[dict[str, Any]]:
    """The fast path: every readable, handled, not yet processed message of the batch in one transaction (one
    commit instead of one per event). Returns what is left for the one-by-one path: everything, if anything in
    the batch failed (so a failure stays isolated to its own message there)."""
    events: dict[str, tuple[dict[str, Any], Event]] = {}
    for message in messages:
        event_type = message.get("type") if isinstance(message, dict) else None
        if not isinstance(event_type, str) or event_type not in handlers:
            return messages
        try:
            event = Event.from_message(message)
        except (KeyError, TypeError, ValueError, AttributeError):
            return messages
        if event.event_id in events:
            return messages
        events[event.event_id] = (message, event)
    try:
        with db.uow() as uow:
            # Mark them all processed in one statement; the ones already marked are the duplicates.
            fresh = set(uow.session.scalars(
                insert_for(uow.session)(models.processed)
                .values([{"event_id": event_id, "event_type": event.type, "processed_at": clock.now()}
                         for event_id, (_message, event) in events.items()])
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(models.processed.event_id)
            ))
            seen = set(events) - fresh
            for event_id, (_message, event) in events.items():
                if event_id in fresh:
                    handlers[event.type](uow, event)
            uow.commit()
    except Exception as exc:  # noqa: BLE001 - the one-by-one path isolates (and reports) the failure
        log.info("batch not applied together; applying one by one", extra={"service": service, "error": str(exc)})
        return messages
    for event_id, (message, event) in events.items():
        outcome = "duplicate" if event_id in seen else "applied"
        counts[outcome] += 1
        EVENTS_CONSUMED.labels(service, event.type, outcome).inc()
        done.append(message)
    return []


def _event_id(message: Any) -> str:
    return str(message.get("event_id")) if isinstance(message, dict) else "?"


def _consume_one(service, db, models, handlers, message, redis) -> str:
    event_type = message.get("type") if isinstance(message, dict) else None
    handler = handlers.get(event_type) if isinstance(event_type, str) else None
    if handler is None:
        EVENTS_CONSUMED.labels(service, str(event_type), "ignored").inc()
        return "ignored"
    try:
        event = Event.from_message(message)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.error("unreadable event dead-lettered", extra={"service": service, "error": str(exc)})
        if redis is not None:
            redis.rpush(dead_letter_key(service), json.dumps({"message": message, "error": str(exc)}, default=str))
        EVENTS_CONSUMED.labels(service, event_type, "dead").inc()
        return "dead"
    with db.uow() as uow:
        uow.session.add(models.processed(event_id=event.event_id, event_type=event.type))
        try:
            # The primary key is the guard: a concurrent or repeated delivery fails here (or waits for the
            # first delivery's transaction and then fails).
            uow.session.flush()
        except IntegrityError:
            uow.rollback()
            EVENTS_CONSUMED.labels(service, event.type, "duplicate").inc()
            return "duplicate"
        handler(uow, event)
        try:
            uow.commit()
        except IntegrityError:
            uow.rollback()
            if not _already_processed(db, models, event.event_id):
                raise
            EVENTS_CONSUMED.labels(service, event.type, "duplicate").inc()
            return "duplicate"
    EVENTS_CONSUMED.labels(service, event.type, "applied").inc()
    return "applied"


def _acknowledge(service: str, messages: list[dict[str, Any]], redis: Redis | None) -> None:
    if redis is None or not messages:
        return
    by_producer: dict[str, list[str]] = {}
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("source"), str) and message.get("event_id"):
            by_producer.setdefault(message["source"], []).append(f"{message['event_id']}:{service}")
    try:
        pipe = redis.pipeline()
        for producer, members in by_producer.items():
            pipe.sadd(ack_key(producer), *members)
        pipe.execute()
    except RedisError as exc:
        log.warning("acknowledgements lost; the producer will re-send", extra={"error": str(exc)})


def _already_processed(db: Database, models: InfraModels, event_id: str) -> bool:
    with db.reader() as uow:
        return uow.session.get(models.processed, event_id) is not None
