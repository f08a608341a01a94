"""Faults on the way from an accepted action to a credited balance: a worker killed mid-job, Redis gone while
actions are posted, an event delivered twice. Real relay and worker processes (`lvbao relay`, `lvbao worker`),
a Redis of the test's own that it can stop, and `lvbao verify` as the judge after each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select, update

from lvbao.embedded import EmbeddedRedis
from services.activities.models import infra as activities_infra
from services.points.models import LedgerEntry
from services.points.models import infra as points_infra
from shared import clock
from shared.outbox import handler_path, queue_for
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EMPLOYEES = 10
TRIPS_PER_EMPLOYEE = 20  # 4 a day (the default rule's limit) over 5 past days: all accepted


@pytest.fixture
def private_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class Pipeline:
    """`lvbao relay` and `lvbao worker` as the deployment runs them, on the test database and a given Redis."""

    def __init__(self, settings, redis_url: str, logs):
        self.logs = logs
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LVBAO_")}
        self.env.update({"LVBAO_DATABASE_URL": settings.database_url, "LVBAO_REDIS_URL": redis_url,
                         "LVBAO_LOG_LEVEL": "INFO"})
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> subprocess.Popen:
        args = {"relay": ["relay", "--poll-interval", "0.05"],
                "worker": ["worker", "points", "activities", "rewards"],
                "points-worker": ["worker", "points"], "rewards-worker": ["worker", "rewards", "activities"]}[name]
        with open(self.logs / f"{name}.log", "a") as log:
            process = subprocess.Popen([sys.executable, "-m", "lvbao.cli", *args], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def verify(self, wait: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "lvbao.cli", "verify", "--wait", str(wait)], env=self.env,
                                capture_output=True, text=True, timeout=wait + 60)
        if result.returncode:
            for log in sorted(self.logs.glob("*.log")):
                result.stdout += f"\n--- {log.name} ---\n" + log.read_text()[-6000:]
        return result


@pytest.fixture
def pipeline(settings, private_redis, databases, clean, tmp_path):
    pipe = Pipeline(settings, private_redis.url, tmp_path)
    yield pipe
    pipe.stop_all()


@pytest.fixture
def employees(pilot, databases):
    tokens = [pilot.employee(f"o-fault-{i}", f"138000000{i + 10:02d}")["access_token"] for i in range(EMPLOYEES)]
    from tests.support import deliver_outbox

    deliver_outbox(databases)  # the default rules' limits and the employees reach the consumers
    return tokens


def post_commutes(api, tokens, per_employee: int = TRIPS_PER_EMPLOYEE) -> list[int]:
    """Commutes on past days, 4 a day at hours that cannot overlap; every one must be accepted."""
    today = clock.local_now().replace(minute=0, second=0, microsecond=0)
    ids = []
    for token in tokens:
        for n in range(per_employee):
            day, slot = divmod(n, 4)
            occurred = (today - timedelta(days=day + 1)).replace(hour=(7, 9, 17, 19)[slot])
            response = api.post("/api/activities/actions", token=token, headers={"Idempotency-Key": uuid.uuid4().hex},
                                json={"type": "commute", "mode": "bus", "distance_km": 5,
                                      "occurred_at": occurred.isoformat()})
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "accepted", response.json()
            ids.append(response.json()["id"])
    return ids


def awards(databases) -> int:
    with databases["points"].reader() as uow:
        return uow.session.scalar(select(func.count(LedgerEntry.id)).where(LedgerEntry.kind == "award"))


def processed(databases) -> int:
    with databases["points"].reader() as uow:
        return uow.session.scalar(select(func.count()).select_from(points_infra.processed))


def assert_verified(pipeline: Pipeline) -> None:
    result = pipeline.verify()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")


def test_a_worker_killed_mid_job_credits_every_action_once(api, employees, pipeline, private_redis, databases):
    total = EMPLOYEES * TRIPS_PER_EMPLOYEE
    post_commutes(api, employees)
    pipeline.start("relay")
    assert wait_until(lambda: _unpublished(databases) == 0, timeout=30)
    started = StartedJobRegistry(queue=queue_for("points", private_redis_client(private_redis)))
    pipeline.start("worker")
    # Kill it while it works on the batch of 200 credits (started, not yet committed).
    assert wait_until(lambda: started.count > 0, timeout=60, interval=0.002)
    pipeline.kill("worker")
    credited_at_kill = awards(databases)
    assert credited_at_kill < total, f"the kill was not mid-job ({credited_at_kill} of {total} credited)"
    assert started.count == 1  # the dead worker's job, left "started"

    pipeline.start("worker")  # re-queues the job its dead predecessor left "started"
    assert_verified(pipeline)
    assert awards(databases) == total
    assert processed(databases) >= total  # + the members of the employees


def test_redis_stopped_while_actions_are_posted(api, employees, pipeline, private_redis, databases):
    pipeline.start("relay")
    pipeline.start("worker")
    private_redis.stop()
    ids = post_commutes(api, employees)  # the write path needs no Redis: all accepted
    assert len(ids) == EMPLOYEES * TRIPS_PER_EMPLOYEE
    assert awards(databases) == 0
    private_redis.start()  # same port, same data directory
    assert_verified(pipeline)
    assert awards(databases) == len(ids)


def test_the_same_events_delivered_twice_credit_once(api, employees, pipeline, private_redis, databases):
    ids = post_commutes(api, employees[:2], per_employee=8)
    pipeline.start("relay")
    pipeline.start("worker")
    assert_verified(pipeline)
    assert awards(databases) == len(ids)
    with databases["activities"].reader() as uow:
        messages = list(uow.session.scalars(select(activities_infra.outbox.message)))
    redis = private_redis_client(private_redis)
    queue_for("points", redis).enqueue(handler_path("points"), messages)  # a second delivery of every event
    with databases["activities"].uow() as uow:  # and a third: the relay "crashed" before marking them sent
        uow.session.execute(update(activities_infra.outbox).values(published_at=None, acked_at=None))
        uow.commit()
    assert wait_until(lambda: queue_for("points", redis).count == 0 and _unpublished(databases) == 0, timeout=30)
    assert_verified(pipeline)
    assert awards(databases) == len(ids)


def private_redis_client(server: EmbeddedRedis):
    import redis

    return redis.Redis.from_url(server.url)


def _unpublished(databases) -> int:
    Outbox = activities_infra.outbox
    with databases["activities"].reader() as uow:
        return uow.session.scalar(select(func.count(Outbox.id)).where(Outbox.published_at.is_(None)))


REDEMPTIONS_PER_EMPLOYEE = 12  # of a 10-point reward with 100 points each: 10 confirmed, 2 refused


def test_the_points_worker_killed_between_saga_steps(api, pilot, employees, pipeline, databases):
    from services.rewards.models import Redemption
    from tests.integration.test_rewards import add_reward, grant, redeem

    admin = pilot.admin_login("admin", "province-admin-pw-1")["access_token"]
    reward = add_reward(api, admin, pilot.institution_id, stock=1000)
    for token in employees:
        user_id = api.get("/api/auth/me", token=token).json()["id"]
        grant(databases, user_id, pilot.institution_id, 100)
        for _ in range(REDEMPTIONS_PER_EMPLOYEE):
            assert redeem(api, token, reward["id"]).status_code == 202

    def debits() -> int:
        with databases["points"].reader() as uow:
            return uow.session.scalar(select(func.count(LedgerEntry.id)).where(LedgerEntry.kind == "debit"))

    def by_status() -> dict[str, int]:
        with databases["rewards"].reader() as uow:
            return dict(uow.session.execute(select(Redemption.status, func.count()).group_by(Redemption.status)).all())

    pipeline.start("relay")
    pipeline.start("rewards-worker")
    pipeline.start("points-worker")
    assert wait_until(lambda: debits() > 0, timeout=60, interval=0.002)
    pipeline.kill("points-worker")  # debits done for some, answers on their way, the rest not yet decided
    assert by_status().get("pending", 0) > 0, by_status()
    pipeline.start("points-worker")
    assert_verified(pipeline)
    total = EMPLOYEES * REDEMPTIONS_PER_EMPLOYEE
    assert wait_until(lambda: by_status() == {"confirmed": EMPLOYEES * 10, "rejected": total - EMPLOYEES * 10},
                      timeout=30), by_status()
    assert debits() == EMPLOYEES * 10
