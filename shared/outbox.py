"""The transactional outbox and its relay to RQ queues.

A use case calls :func:`record_event` inside its unit of work, so the event is stored if and only if the
change that caused it is. The relay reads unpublished rows, enqueues them (one job per batch and queue) and
marks them published. A crash between enqueue and mark re-sends the batch. A row stays until its consumer
acknowledges it; one published but unacknowledged for ``REDELIVER_AFTER`` (its job lost with a Redis that
forgot it, or failed for good) is sent again. Delivery is at-least-once; consumers are idempotent (see
:mod:`shared.consumer`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError

from shared import clock
from shared.consumer import ack_key
from shared.db import Database, UnitOfWork
from shared.events import Event, consumers_of
from shared.infra_models import InfraModels
from shared.metrics import EVENTS_RELAYED
from shared.parts import Chore

log = logging.getLogger("lvbao.outbox")

# Retry intervals for a failed consumer job (seconds); the worker runs RQ's scheduler to honour them.
RETRY_INTERVALS = [1, 5, 30, 120, 600]
# Longer than a job's whole retry schedule, so a job still being retried is not sent twice for nothing.
REDELIVER_AFTER = timedelta(minutes=15)
# A message sent this often and never acknowledged is left for people (it fails every time).
MAX_DELIVERIES = 10


def handler_path(service: str) -> str:
    """The job function every service exposes for its queue."""
    return f"services.{service}.tasks.handle_events"


def queue_for(service: str, redis: Redis) -> Queue:
    return Queue(service, connection=redis, serializer=JSONSerializer)


def record_event(uow: UnitOfWork, models: InfraModels, event: Event) -> None:
    """Store ``event`` in the outbox, one row per consuming service, in the caller's transaction."""
    message = {**event.to_message(), "source": models.outbox.__table__.schema}
    for destination in consumers_of(event):
        uow.session.add(
            models.outbox(
                event_id=event.event_id, event_type=event.type, destination=destination, message=message
            )
        )


class OutboxRelay:
    """Moves one service's outbox rows to their consumers' queues."""

    def __init__(self, service: str, db: Database, models: InfraModels, redis: Redis, batch_size: int = 200):
        self.service = service
        self.db = db
        self.models = models
        self.redis = redis
        self.batch_size = batch_size

    def relay_once(self) -> int:
        """Relay one batch; returns how many rows were published. Raises RedisError when Redis is down."""
        Outbox = self.models.outbox
        with self.db.reader() as uow:  # idle polls take no write lock
            if uow.session.scalars(select(Outbox.id).where(Outbox.published_at.is_(None)).limit(1)).first() is None:
                return 0
        with self.db.uow() as uow:
            rows = uow.session.scalars(
                select(Outbox)
                .where(Outbox.published_at.is_(None))
                .order_by(Outbox.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            by_destination: dict[str, list] = defaultdict(list)
            for row in rows:
                by_destination[row.destination].append(row)
            published = 0
            try:
                for destination, batch in by_destination.items():
                    job = queue_for(destination, self.redis).enqueue(
                        handler_path(destination),
                        [row.message for row in batch],
                        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                        result_ttl=300,
                        failure_ttl=30 * 24 * 3600,
                        description=f"{len(batch)} event(s) from {self.service}",
                    )
                    # One statement per batch, not one per row.
                    uow.session.execute(
                        update(Outbox)
                        .where(Outbox.id.in_([row.id for row in batch]))
                        .values(published_at=clock.now(), attempts=Outbox.attempts + 1, job_id=job.id)
                        .execution_options(synchronize_session=False)
                    )
                    published += len(batch)
                    EVENTS_RELAYED.labels(self.service, destination).inc(len(batch))
            except RedisError:
                # Keep what did reach a queue; the rest stays unpublished and is retried.
                uow.commit()
                raise
            uow.commit()
            return published

    def collect_acks(self, batch: int = 1000) -> int:
        """Mark acknowledged rows (consumers add ``event_id:destination`` to this producer's ack set)."""
        Outbox = self.models.outbox
        members = self.redis.spop(ack_key(self.service), batch) or []
        if not members:
            return 0
        by_destination: dict[str, list[str]] = defaultdict(list)
        for member in members:
            event_id, destination = member.decode().rsplit(":", 1)
            by_destination[destination].append(event_id)
        stamp = clock.now()
        with self.db.uow() as uow:
            for destination, event_ids in by_destination.items():
                uow.session.execute(
                    update(Outbox)
                    .where(Outbox.destination == destination, Outbox.event_id.in_(event_ids),
                           Outbox.acked_at.is_(None))
                    .values(acked_at=stamp)
                    .execution_options(synchronize_session=False)
                )
            uow.commit()
        return len(members)

    def redeliver_unacknowledged(self) -> int:
        """Send again what was published long ago, never acknowledged, and whose job is gone (Redis lost it),
        failed for good, or finished without its acknowledgement arriving. A job still waiting in a queue
        that is behind is left alone, so a backlog is not multiplied."""
        Outbox = self.models.outbox
        stale = (
            Outbox.acked_at.is_(None),
            Outbox.published_at < clock.now() - REDELIVER_AFTER,
            Outbox.attempts < MAX_DELIVERIES,
        )
        with self.db.reader() as uow:
            job_ids = uow.session.scalars(select(Outbox.job_id).where(*stale).distinct().limit(1000)).all()
        lost = [job_id for job_id in job_ids if not self._job_pending(job_id)]
        if not lost:
            return 0
        with self.db.uow() as uow:
            count = uow.session.execute(
                update(Outbox)
                .where(*stale, or_(Outbox.job_id.in_([j for j in lost if j]), Outbox.job_id.is_(None)))
                .values(published_at=None)
            ).rowcount
            uow.commit()
        if count:
            log.warning("re-sending unacknowledged events", extra={"service": self.service, "count": count})
        return count

    def _job_pending(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        try:
            status = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer).get_status()
        except NoSuchJobError:
            return False
        return status not in (JobStatus.FAILED, JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.CANCELED)

    def backlog(self) -> int:
        Outbox = self.models.outbox
        with self.db.reader() as uow:
            return uow.session.scalar(select(func.count(Outbox.id)).where(Outbox.published_at.is_(None))) or 0


def run_relays(
    relays: list[OutboxRelay],
    *,
    poll_interval: float = 0.1,
    max_backoff: float = 10.0,
    should_stop: Callable[[], bool] = lambda: False,
    chores: Sequence[Chore] = (),
) -> None:
    """Relay until ``should_stop``: drain while there is work, poll when idle, back off on errors.

    ``chores`` (each service's periodic work, see shared.parts) run between batches when they are due.
    """
    backoff = poll_interval
    next_run = [0.0 for _ in chores]
    while not should_stop():
        for i, chore in enumerate(chores):
            if time.monotonic() >= next_run[i]:
                try:
                    chore.run()
                    next_run[i] = time.monotonic() + chore.interval
                except Exception as exc:  # noqa: BLE001 - a periodic chore must not stop the relay
                    log.warning("periodic task failed", extra={"task": chore.name, "error": str(exc)})
                    next_run[i] = time.monotonic() + min(chore.interval, max_backoff)
        moved = failed = 0
        for relay in relays:  # each service on its own: one's trouble does not hold up the others
            try:
                moved += relay.relay_once()
                relay.collect_acks()
            except Exception as exc:
                # Redis or the database is away (or anything else went wrong): the outbox keeps everything.
                failed += 1
                level = logging.WARNING if isinstance(exc, RedisError | DBAPIError) else logging.ERROR
                log.log(level, "relay paused", exc_info=level == logging.ERROR,
                        extra={"service": relay.service, "retry_in": backoff,
                               "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
        if failed:
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        backoff = poll_interval
        if not moved:
            time.sleep(poll_interval)
