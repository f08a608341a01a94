"""A worker killed mid-job leaves its job "started" (or, killed a moment earlier, still "queued" but taken off
the queue). The next worker on the host re-queues it; jobs of live workers are left alone."""

from __future__ import annotations

import os

import pytest
from rq import SimpleWorker
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from shared.outbox import handler_path, queue_for
from shared.worker import recover_abandoned_jobs, run_worker

pytestmark = pytest.mark.integration

DEAD_PID = 2**22 + 12345  # above the kernel's pid range: never a running process


@pytest.fixture
def queue(redis_client, clean):
    return queue_for("points", redis_client)


def _taken_by(queue, redis_client, name: str, pid: int, *, marked_started: bool):
    """A job as a worker called ``name`` (process ``pid``) left it: taken off the queue, execution registered,
    and (unless it died just before) marked started."""
    job = queue.enqueue(handler_path("points"), [])
    redis_client.lrem(queue.key, 0, job.id)
    worker = SimpleWorker([queue], connection=redis_client, serializer=JSONSerializer, name=name)
    worker.register_birth()
    redis_client.hset(worker.key, "pid", pid)
    worker.prepare_execution(job)
    if marked_started:
        with redis_client.pipeline() as pipe:
            job.prepare_for_execution(worker.name, pipeline=pipe)
            pipe.execute()
    return job


@pytest.mark.parametrize("marked_started", [True, False])
def test_jobs_of_a_dead_worker_are_queued_again(queue, redis_client, marked_started):
    job = _taken_by(queue, redis_client, "ghost", DEAD_PID, marked_started=marked_started)
    assert queue.count == 0 and StartedJobRegistry(queue=queue).count == 1
    assert recover_abandoned_jobs(redis_client, ["points"]) == 1
    assert queue.job_ids == [job.id]
    assert StartedJobRegistry(queue=queue).count == 0
    assert recover_abandoned_jobs(redis_client, ["points"]) == 0


def test_jobs_of_a_live_worker_are_left_alone(queue, redis_client):
    parent = os.getppid()  # a process that is certainly running, and not this one
    _taken_by(queue, redis_client, "busy", parent, marked_started=True)
    assert recover_abandoned_jobs(redis_client, ["points"]) == 0
    assert queue.count == 0 and StartedJobRegistry(queue=queue).count == 1


def test_a_burst_worker_works_the_queue_and_stops(queue, redis_client, settings, databases):
    from services.points import tasks
    from services.points.parts import PointsParts

    tasks.parts.use(PointsParts(settings, db=databases["points"]))
    job = queue.enqueue(handler_path("points"), [])
    run_worker(lambda: redis_client, ["points"], burst=True, logging_level="WARNING")
    assert job.get_status(refresh=True) == "finished"
    tasks.parts.use(None)
