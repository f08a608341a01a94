"""The RQ worker every service's queue is consumed by, hardened for the failures the platform must survive.

- ``SimpleWorker`` (no fork per job: ~3x the jobs per second of RQ's forking worker on these machines).
- A worker killed mid-job (SIGKILL, OOM, power) leaves its job "started" until RQ's heartbeat expiry and its
  next maintenance pass. On start, jobs started by workers of this host that no longer run are re-queued at
  once; jobs of other hosts are left to RQ's own abandoned-job handling (heartbeat + ``Retry``) and to the
  producers' outbox re-delivery. Handlers are idempotent, so a job run twice changes nothing.
- Redis going away: RQ's loop waits and reconnects; anything that escapes it restarts the worker after a pause.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from shared.outbox import queue_for

log = logging.getLogger("lvbao.worker")

FINISHED_STATES = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED)
# RQ's default is 10 minutes; a shorter pass notices abandoned jobs of other hosts sooner.
MAINTENANCE_INTERVAL = 60


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_gone(redis: Redis, worker_name: str | None) -> bool:
    if not worker_name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, connection=redis,
                                serializer=JSONSerializer)
    if worker is None:
        return True  # its registration expired: it stopped sending heartbeats long ago
    if worker.hostname != socket.gethostname() or worker.pid is None:
        return False
    # A container restarted under the same hostname gets the same pid again: that was our predecessor.
    return worker.pid == os.getpid() or not _process_alive(worker.pid)


def recover_abandoned_jobs(redis: Redis, queue_names: list[str]) -> int:
    """Re-queue jobs whose worker died mid-job; returns how many."""
    recovered = 0
    for name in queue_names:
        queue = queue_for(name, redis)
        registry = StartedJobRegistry(queue=queue)
        for job_id in registry.get_job_ids(cleanup=False):
            try:
                job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
            except NoSuchJobError:
                continue  # a vanished job is the producer's outbox's to re-send
            if job.get_status() in FINISHED_STATES:
                continue
            # A worker killed between taking the job and marking it started left it "queued", with its name
            # only on the execution record.
            workers = {job.worker_name, *(execution.worker_name for execution in job.get_executions())} - {None, ""}
            if not workers or not all(_worker_gone(redis, name) for name in workers):
                continue
            with redis.pipeline() as pipe:
                registry.remove_executions(job, pipeline=pipe)
                pipe.execute()
            queue.enqueue_job(job)
            recovered += 1
            log.warning("re-queued a job its dead worker left behind",
                        extra={"queue": name, "job_id": job.id, "worker": job.worker_name})
    return recovered


def run_worker(
    redis_factory: Callable[[], Redis],
    queue_names: list[str],
    *,
    burst: bool = False,
    logging_level: str = "INFO",
    max_pause: float = 30.0,
) -> None:
    """Work the queues until stopped (SIGTERM/SIGINT, handled by RQ: the current job finishes first)."""
    pause = 1.0
    while True:
        redis = redis_factory()
        try:
            recover_abandoned_jobs(redis, queue_names)
            worker = SimpleWorker(queue_names, connection=redis, serializer=JSONSerializer,
                                  maintenance_interval=MAINTENANCE_INTERVAL)
            worker.work(with_scheduler=True, burst=burst, logging_level=logging_level)
            return
        except RedisError as exc:
            if burst:
                raise
            log.warning("worker lost Redis; restarting", extra={"error": str(exc), "retry_in": pause})
            time.sleep(pause)
            pause = min(pause * 2, max_pause)
