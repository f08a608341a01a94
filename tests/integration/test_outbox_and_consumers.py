"""The outbox relay and idempotent consumption, with the sample event EmployeeBound (gateway -> points)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis as redis_lib
from rq import SimpleWorker
from sqlalchemy import func, select

from services.gateway.models import infra as gateway_infra
from services.points import tasks as points_tasks
from services.points.models import Member
from services.points.models import infra as points_infra
from services.points.parts import PointsParts
from shared import clock
from shared.consumer import EventsFailed, ack_key, consume
from shared.events import SUBSCRIPTIONS, ActionReversed, EmployeeBound
from shared.outbox import OutboxRelay, queue_for, record_event

pytestmark = pytest.mark.integration


@pytest.fixture
def points_runtime(settings, databases):
    parts = PointsParts(settings, db=databases["points"])
    points_tasks.parts.use(parts)
    yield parts
    points_tasks.parts.use(None)


def _unpublished(db):
    Outbox = gateway_infra.outbox
    with db.uow() as uow:
        return uow.session.scalar(select(func.count(Outbox.id)).where(Outbox.published_at.is_(None)))


def _members(db):
    with db.uow() as uow:
        return {m.user_id: m.nickname for m in uow.session.scalars(select(Member))}


@pytest.fixture(autouse=True)
def points_only(monkeypatch):
    """These tests follow one event to one consumer (in production EmployeeBound also goes to activities)."""
    monkeypatch.setitem(SUBSCRIPTIONS, "EmployeeBound", ("points",))


@pytest.fixture
def pilot(pilot, databases):
    """The pilot, its seed's own announcements (departments and headcounts) already delivered: these tests
    follow one event."""
    with databases["gateway"].uow() as uow:
        for row in uow.session.scalars(select(gateway_infra.outbox).where(gateway_infra.outbox.published_at.is_(None))):
            row.published_at = row.acked_at = clock.now()
        uow.commit()
    return pilot


def _work(redis_client):
    from rq.serializers import JSONSerializer

    worker = SimpleWorker([queue_for("points", redis_client)], connection=redis_client, serializer=JSONSerializer)
    worker.work(burst=True)


def test_binding_reaches_points_through_outbox_relay_and_queue(pilot, databases, redis_client, points_runtime):
    pair = pilot.wechat_login("o-outbox")
    assert pilot.bind_by_phone(pair["access_token"], "13800000008").status_code == 200
    gateway = databases["gateway"]
    assert _unpublished(gateway) == 1

    relay = OutboxRelay("gateway", gateway, gateway_infra, redis_client)
    assert relay.relay_once() == 1
    assert _unpublished(gateway) == 0
    assert queue_for("points", redis_client).count == 1

    _work(redis_client)
    assert _members(databases["points"]) == {pair["user"]["id"]: "吴同学9"}


def test_redelivered_event_changes_nothing(databases, clean):
    event = EmployeeBound(user_id=7, institution_id=1, department_id=2, employee_no="E7", nickname="七")
    message = event.to_message()
    handlers = {"EmployeeBound": lambda uow, e: uow.session.add(
        Member(user_id=e.user_id, institution_id=e.institution_id, department_id=e.department_id,
               employee_no=e.employee_no, nickname=e.nickname, bound_at=e.occurred_at))}
    first = consume("points", databases["points"], points_infra, handlers, [message])
    again = consume("points", databases["points"], points_infra, handlers, [message, message])
    assert first == {"applied": 1, "duplicate": 0, "ignored": 0, "dead": 0}
    assert again == {"applied": 0, "duplicate": 2, "ignored": 0, "dead": 0}
    assert _members(databases["points"]) == {7: "七"}


def test_concurrent_deliveries_apply_once(databases, clean, points_runtime):
    event = EmployeeBound(user_id=8, institution_id=1, department_id=None, employee_no="E8", nickname="八")
    results, barrier = [], threading.Barrier(6)

    def deliver():
        barrier.wait()
        results.append(points_tasks.handle_events([event.to_message()]))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["applied"] for r in results) == 1
    assert sum(r["duplicate"] for r in results) == 5
    assert _members(databases["points"]) == {8: "八"}


def test_failed_handler_leaves_the_event_unprocessed_for_the_retry(databases, clean):
    event = EmployeeBound(user_id=9, institution_id=1, department_id=None, employee_no="E9", nickname="九")

    def broken(uow, e):
        raise RuntimeError("downstream hiccup")

    with pytest.raises(EventsFailed, match="downstream hiccup"):
        consume("points", databases["points"], points_infra, {"EmployeeBound": broken}, [event.to_message()])
    from services.points.handlers import HANDLERS

    assert consume("points", databases["points"], points_infra, HANDLERS, [event.to_message()])["applied"] == 1
    assert _members(databases["points"]) == {9: "九"}


def test_a_batch_is_applied_together_and_one_failure_stays_with_its_message(databases, clean):
    from services.points.handlers import HANDLERS

    events = [EmployeeBound(user_id=400 + i, institution_id=1, department_id=None, employee_no=f"E{400 + i}",
                            nickname=f"n{i}") for i in range(4)]
    consume("points", databases["points"], points_infra, HANDLERS, [events[0].to_message()])

    def picky(uow, e):
        if e.user_id == 402:
            raise RuntimeError("this one is bad")
        HANDLERS["EmployeeBound"](uow, e)

    # One bad message: the batch falls back to one transaction per message; only that one fails.
    with pytest.raises(EventsFailed, match="this one is bad") as failed:
        consume("points", databases["points"], points_infra, {"EmployeeBound": picky},
                [e.to_message() for e in events])
    assert len(failed.value.failures) == 1
    assert set(_members(databases["points"])) == {400, 401, 403}
    # The retry applies the rest together (the ones done before count as duplicates).
    again = consume("points", databases["points"], points_infra, HANDLERS, [e.to_message() for e in events])
    assert again == {"applied": 1, "duplicate": 3, "ignored": 0, "dead": 0}
    assert set(_members(databases["points"])) == {400, 401, 402, 403}


def test_relay_keeps_events_while_redis_is_down_and_drains_after(databases, clean, redis_client, points_runtime):
    gateway = databases["gateway"]
    for i in range(5):
        with gateway.uow() as uow:
            record_event(uow, gateway_infra, EmployeeBound(user_id=100 + i, institution_id=1, department_id=None,
                                                           employee_no=f"E{100 + i}", nickname=f"n{i}"))
            uow.commit()
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis_lib.exceptions.ConnectionError):
        OutboxRelay("gateway", gateway, gateway_infra, dead).relay_once()
    assert _unpublished(gateway) == 5

    assert OutboxRelay("gateway", gateway, gateway_infra, redis_client).relay_once() == 5
    _work(redis_client)
    assert set(_members(databases["points"])) == {100, 101, 102, 103, 104}


def test_relay_crash_after_enqueue_redelivers_but_applies_once(databases, clean, redis_client, points_runtime):
    gateway = databases["gateway"]
    with gateway.uow() as uow:
        record_event(uow, gateway_infra, EmployeeBound(user_id=200, institution_id=1, department_id=None,
                                                       employee_no="E200", nickname="two hundred"))
        uow.commit()
    relay = OutboxRelay("gateway", gateway, gateway_infra, redis_client)

    class CrashAfterEnqueue(Exception):
        pass

    original = gateway.uow

    def crashing_uow():
        uow = original()
        uow.commit = lambda: (_ for _ in ()).throw(CrashAfterEnqueue())
        return uow

    gateway.uow = crashing_uow
    try:
        with pytest.raises(CrashAfterEnqueue):
            relay.relay_once()
    finally:
        gateway.uow = original
    assert _unpublished(gateway) == 1  # the mark never committed
    assert relay.relay_once() == 1     # so it is sent again
    assert queue_for("points", redis_client).count == 2
    _work(redis_client)
    assert _members(databases["points"]) == {200: "two hundred"}


@pytest.mark.parametrize("service", ["gateway", "activities", "rewards"])
def test_every_queue_has_a_job_that_ignores_events_it_does_not_handle(service, settings, databases, clean):
    from lvbao import registry

    tasks = registry.module(service, "tasks")
    tasks.parts.use(registry.build(service, settings, db=databases[service]))
    event = ActionReversed(action_id=1, user_id=1, institution_id=1, reason="x")  # only points handles it
    assert tasks.handle_events([event.to_message()]) == {"applied": 0, "duplicate": 0, "ignored": 1, "dead": 0}


def _record(db, event):
    with db.uow() as uow:
        record_event(uow, gateway_infra, event)
        uow.commit()


def _row(db, event_id):
    with db.uow() as uow:
        return uow.session.scalars(select(gateway_infra.outbox).where(gateway_infra.outbox.event_id == event_id)).one()


def test_rows_stay_until_acknowledged_and_lost_jobs_are_sent_again(databases, clean, redis_client, points_runtime,
                                                                   frozen_clock):
    gateway = databases["gateway"]
    event = EmployeeBound(user_id=300, institution_id=1, department_id=None, employee_no="E300", nickname="lost")
    _record(gateway, event)
    relay = OutboxRelay("gateway", gateway, gateway_infra, redis_client)
    assert relay.relay_once() == 1
    frozen_clock.set(clock.now() + timedelta(minutes=16))
    assert relay.redeliver_unacknowledged() == 0  # its job still waits in the queue (workers are behind)
    frozen_clock.unfreeze()
    redis_client.flushdb()  # Redis loses the job (a restart without the last second of AOF)

    frozen_clock.set(clock.now() + timedelta(minutes=14))
    assert relay.redeliver_unacknowledged() == 0  # still inside a job's own retry schedule
    frozen_clock.set(clock.now() + timedelta(minutes=2))
    assert relay.redeliver_unacknowledged() == 1
    assert relay.relay_once() == 1
    _work(redis_client)
    assert _members(databases["points"]) == {300: "lost"}
    assert _row(gateway, event.event_id).acked_at is None
    assert relay.collect_acks() == 1
    row = _row(gateway, event.event_id)
    assert row.acked_at is not None and row.attempts == 2
    frozen_clock.set(clock.now() + timedelta(hours=1))
    assert relay.redeliver_unacknowledged() == 0


def test_unreadable_messages_are_dead_lettered_without_blocking_the_batch(databases, clean, redis_client):
    from services.points.handlers import HANDLERS
    from shared.consumer import dead_letter_key

    good = EmployeeBound(user_id=400, institution_id=1, department_id=None, employee_no="E400", nickname="ok")
    newer = {**good.to_message(), "event_id": "newer-producer", "data": {**good.to_message()["data"],
                                                                          "user_id": 401, "added_later": 1}}
    broken = {"type": "EmployeeBound", "event_id": "x", "source": "gateway", "data": {"user_id": 1}}
    counts = consume("points", databases["points"], points_infra, HANDLERS,
                     [broken, good.to_message(), newer, {"type": "SomethingElse"}], redis_client)
    assert counts == {"applied": 2, "duplicate": 0, "ignored": 1, "dead": 1}
    assert set(_members(databases["points"])) == {400, 401}
    assert redis_client.llen(dead_letter_key("points")) == 1


def test_a_handler_breaking_a_constraint_fails_loudly_and_applies_nothing(databases, clean):
    event = EmployeeBound(user_id=500, institution_id=1, department_id=None, employee_no="E500", nickname="x")

    def clashing(uow, e):
        for _ in range(2):  # the same member twice: the primary key refuses it at commit
            uow.session.add(Member(user_id=e.user_id, institution_id=1, employee_no="E500", nickname="x",
                                   bound_at=e.occurred_at))

    with pytest.raises(EventsFailed, match="IntegrityError"):
        consume("points", databases["points"], points_infra, {"EmployeeBound": clashing}, [event.to_message()])
    with databases["points"].reader() as uow:
        assert uow.session.get(points_infra.processed, event.event_id) is None
    assert _members(databases["points"]) == {}


def test_old_infrastructure_rows_are_pruned(databases, clean, redis_client, points_runtime, frozen_clock):
    from shared.housekeeping import prune

    gateway = databases["gateway"]
    acked = EmployeeBound(user_id=600, institution_id=1, department_id=None, employee_no="E600", nickname="a")
    waiting = EmployeeBound(user_id=601, institution_id=1, department_id=None, employee_no="E601", nickname="b")
    _record(gateway, acked)
    relay = OutboxRelay("gateway", gateway, gateway_infra, redis_client)
    relay.relay_once()
    _work(redis_client)
    relay.collect_acks()
    _record(gateway, waiting)
    assert prune(gateway, gateway_infra) == {"outbox": 0, "processed_events": 0, "idempotency_keys": 0}

    frozen_clock.set(clock.now() + timedelta(days=8))
    assert prune(gateway, gateway_infra)["outbox"] == 1  # the unacknowledged one is never pruned
    assert _row(gateway, waiting.event_id).acked_at is None
    assert prune(databases["points"], points_infra)["processed_events"] == 0
    frozen_clock.set(clock.now() + timedelta(days=23))
    assert prune(databases["points"], points_infra)["processed_events"] == 1


def test_a_failing_event_holds_up_only_itself(databases, clean, redis_client):
    from services.points.handlers import remember_member

    events = [EmployeeBound(user_id=700 + i, institution_id=1, department_id=None, employee_no=f"E{700 + i}",
                            nickname=f"n{i}") for i in range(3)]

    def flaky(uow, e):
        if e.user_id == 700:
            raise RuntimeError("only this one")
        remember_member(uow, e)

    messages = [{**e.to_message(), "source": "gateway"} for e in events]
    with pytest.raises(EventsFailed) as failed:
        consume("points", databases["points"], points_infra, {"EmployeeBound": flaky}, messages, redis_client)
    assert len(failed.value.failures) == 1
    assert set(_members(databases["points"])) == {701, 702}
    acked = {m.decode() for m in redis_client.smembers(ack_key("gateway"))}
    assert acked == {f"{events[1].event_id}:points", f"{events[2].event_id}:points"}


def test_older_facts_arriving_late_do_not_undo_newer_ones(databases, clean):
    from services.points.handlers import HANDLERS
    from shared.events import EmployeeUpdated

    t0 = clock.now()
    bound = EmployeeBound(user_id=800, institution_id=1, department_id=1, employee_no="E800", nickname="old",
                          occurred_at=t0)
    moved = EmployeeUpdated(user_id=800, institution_id=1, department_id=2, employee_no="E800", nickname="new",
                            occurred_at=t0 + timedelta(minutes=1))
    consume("points", databases["points"], points_infra, HANDLERS, [moved.to_message(), bound.to_message()])
    with databases["points"].reader() as uow:
        member = uow.session.get(Member, 800)
        assert (member.department_id, member.nickname) == (2, "new")
        assert member.bound_at == t0
