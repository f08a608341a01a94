"""Boards in Redis against the ledger: random credits by 200 users in 5 departments, re-deliveries, a crash
between the ledger commit and Redis, a rebuild after Redis lost everything, and period rollover."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.points.board_rebuild import differences, expected_state, rebuild, rebuild_institution, snapshot
from services.points.boards import BoardKeys, apply_pending, sweep_pending
from services.points.handlers import HANDLERS
from services.points.leaderboards import Boards, leaderboard
from services.points.models import BoardUpdate, infra
from services.points.periods import period_of
from shared import clock
from shared.consumer import consume
from shared.events import ActionRecorded, ActionReversed, DepartmentsChanged, EmployeeBound, EmployeeUpdated

pytestmark = pytest.mark.integration

INSTITUTION = 7
DEPARTMENTS = [701, 702, 703, 704, 705]
# 15:00 today in Shanghai: Redis expires old periods by the real clock, so the frozen one stays near it.
_today = datetime.now(clock.LOCAL_TZ).date()
NOW = datetime(_today.year, _today.month, _today.day, 15, 0, tzinfo=clock.LOCAL_TZ)
MODES = ["walk", "bike", "bus", "metro", "carpool"]


def deliver(databases, redis_client, events, *, with_redis: bool = True):
    """Hand events to the points consumer as its worker does (after each batch, the boards)."""
    return consume("points", databases["points"], infra, HANDLERS, [e.to_message() for e in events],
                   redis_client if with_redis else None, apply_pending)


def roster(databases, redis_client, users: int = 200, opted_out: tuple[int, ...] = ()):
    """200 bound employees across 5 departments (department i has 40 + 10 * i on its roster)."""
    deliver(databases, redis_client, [DepartmentsChanged(
        institution_id=INSTITUTION, institution_name="省直机关测试单位",
        departments=[{"id": d, "name": f"第{i + 1}处", "headcount": 40 + 10 * i} for i, d in enumerate(DEPARTMENTS)],
    )])
    deliver(databases, redis_client, [
        EmployeeBound(user_id=u, institution_id=INSTITUTION, department_id=DEPARTMENTS[u % 5],
                      employee_no=f"E{u:04d}", nickname=f"绿友{u}")
        for u in range(1, users + 1)
    ])
    for user_id in opted_out:
        with databases["points"].uow() as uow:
            from services.points.boards import note_refresh
            from services.points.models import Member
            uow.session.get(Member, user_id).board_opt_out = True
            note_refresh(uow.session, "member", user_id, INSTITUTION)
            uow.commit()
    apply_pending(databases["points"], redis_client)


def random_actions(rng: random.Random, count: int, users: int = 200, first_id: int = 1) -> list[ActionRecorded]:
    events = []
    for action_id in range(first_id, first_id + count):
        user = rng.randint(1, users)
        at = NOW - timedelta(minutes=rng.randint(0, 40 * 24 * 60))
        if rng.random() < 0.7:
            kind = dict(action_type="commute", variant=rng.choice(MODES), quantity=f"{rng.uniform(0.5, 25):.2f}",
                        unit="km")
        else:
            kind = dict(action_type="clean_plate", variant="default", quantity="1", unit="meal")
        events.append(ActionRecorded(action_id=action_id, user_id=user, institution_id=INSTITUTION,
                                     department_id=DEPARTMENTS[user % 5], action_at=at.isoformat(), **kind))
    return events


@pytest.mark.frozen_at(NOW)
def test_every_board_equals_the_ledger_after_random_actions_and_again_after_redis_is_lost(
        databases, redis_client, clean):
    rng = random.Random(20261202)
    roster(databases, redis_client, opted_out=(3, 17, 150))
    actions = random_actions(rng, 1500)
    reversals = [ActionReversed(action_id=a.action_id, user_id=a.user_id, institution_id=INSTITUTION,
                                reason="复核不通过") for a in rng.sample(actions, 60)]
    stream = actions + reversals
    rng.shuffle(stream)
    for start in range(0, len(stream), 50):
        batch = stream[start:start + 50]
        deliver(databases, redis_client, batch)
        # At-least-once: some of the batch comes again, as the same events and as new announcements.
        again = rng.sample(batch, 5)
        deliver(databases, redis_client, again)
        deliver(databases, redis_client, [type(e)(**{**e.data(), "occurred_at": e.occurred_at}) for e in again])
    points = databases["points"]
    # Today, this week, last week, last month (whose day boards have expired: only week, month and all remain).
    days = [NOW.date() - timedelta(days=d) for d in (0, 1, 6, 9, 35)]
    for day in days:
        assert differences(points, redis_client, INSTITUTION, day) == [], day
    with snapshot(points) as session:
        compared = {key for day in days for key in expected_state(session, INSTITUTION, day)}
    print(f"\n{len(actions)} actions and {len(reversals)} reversals by 200 users in 5 departments (each batch partly"
          f" delivered again): {len(compared)} board keys compared with the ledger, 0 differences")

    board = leaderboard(redis_client, INSTITUTION, "all", limit=100)
    assert board["total"] > 150 and len(board["entries"]) == 100
    listed = {e["nickname"] for e in board["entries"]}
    assert not listed & {"绿友3", "绿友17", "绿友150"}  # opted out: counted, never listed
    ranks = [e["rank"] for e in board["entries"]]
    assert ranks == sorted(ranks) and ranks[0] == 1

    redis_client.flushdb()  # Redis loses everything (this test's own database)
    lost = differences(points, redis_client, INSTITUTION, NOW.date(), limit=1000)
    assert lost != []
    results = rebuild(points, redis_client, day=NOW.date())
    assert [r["institution_id"] for r in results] == [INSTITUTION]
    assert differences(points, redis_client, INSTITUTION, NOW.date()) == []
    print(f"after FLUSHDB: {len(lost)} boards differ; rebuild: {results[0]}; then 0 differences")
    assert leaderboard(redis_client, INSTITUTION, "all", limit=100) == board
    for day in days[1:]:
        rebuild_institution(points, redis_client, INSTITUTION, day)
        assert differences(points, redis_client, INSTITUTION, day) == [], day


@pytest.mark.frozen_at(NOW)
def test_a_crash_between_the_ledger_and_redis_loses_nothing_and_a_repeat_counts_once(
        databases, redis_client, clean):
    points = databases["points"]
    roster(databases, redis_client, users=10)
    actions = random_actions(random.Random(5), 40, users=10)
    deliver(databases, redis_client, actions, with_redis=False)  # committed; the worker died before Redis
    with points.reader() as uow:
        assert uow.session.scalar(select(func.count()).select_from(BoardUpdate)) > 0
    assert differences(points, redis_client, INSTITUTION) != []
    assert sweep_pending(points, redis_client, older_than=timedelta(0)) > 0
    assert differences(points, redis_client, INSTITUTION) == []

    # Redis took the entries but the rows' delete was lost: applying them again changes nothing.
    with points.uow() as uow:
        from services.points.models import LedgerEntry
        for entry in uow.session.scalars(select(LedgerEntry).where(LedgerEntry.points > 0)):
            uow.session.add(BoardUpdate(kind="entry", ref_id=entry.id, institution_id=INSTITUTION))
        uow.commit()
    counts = apply_pending(points, redis_client)
    assert counts["repeated"] > 0 and counts["applied"] == 0
    assert differences(points, redis_client, INSTITUTION) == []


@pytest.mark.frozen_at(NOW)
def test_credits_arriving_during_a_rebuild_are_counted_once(databases, redis_client, clean):
    points = databases["points"]
    roster(databases, redis_client, users=50)
    rng = random.Random(9)
    deliver(databases, redis_client, random_actions(rng, 300, users=50))
    later = random_actions(rng, 300, users=50, first_id=1000)
    stop = threading.Event()

    def keep_crediting():
        for start in range(0, len(later), 10):
            deliver(databases, redis_client, later[start:start + 10])
        stop.set()

    worker = threading.Thread(target=keep_crediting)
    worker.start()
    rebuilds = 0
    while not stop.is_set() or rebuilds == 0:
        rebuild_institution(points, redis_client, INSTITUTION)
        rebuilds += 1
    worker.join()
    sweep_pending(points, redis_client, older_than=timedelta(0))  # what the flag deferred
    assert differences(points, redis_client, INSTITUTION) == []
    assert rebuilds >= 1


@pytest.mark.frozen_at(NOW)
def test_ties_share_a_rank_and_me_is_found_outside_the_top(databases, redis_client, clean):
    roster(databases, redis_client, users=30)
    at = (NOW - timedelta(hours=1)).isoformat()
    # users 1..30 walk 30 - u km (u = 1 walks 29 km, capped per day); users 10 and 11 walk the same distance.
    events = [ActionRecorded(action_id=u, user_id=u, institution_id=INSTITUTION, department_id=DEPARTMENTS[u % 5],
                             action_type="commute", variant="walk", quantity=str(30 - u), unit="km", action_at=at)
              for u in range(5, 31)]
    events.append(ActionRecorded(action_id=99, user_id=11, institution_id=INSTITUTION, department_id=DEPARTMENTS[1],
                                 action_type="commute", variant="walk", quantity="1", unit="km", action_at=at))
    deliver(databases, redis_client, events)
    redis_client.script_flush()  # a restarted Redis has forgotten the read script: it is loaded again
    board = leaderboard(redis_client, INSTITUTION, "day", limit=10, me_user_id=29)
    points = [e["points"] for e in board["entries"]]
    assert points == sorted(points, reverse=True)
    for a, b in zip(board["entries"], board["entries"][1:], strict=False):
        assert (a["rank"] == b["rank"]) == (a["points"] == b["points"])
    tied = [e for e in board["entries"] if e["points"] == board["entries"][5]["points"]]
    assert len(tied) >= 2 and {e["rank"] for e in tied} == {tied[0]["rank"]}
    everyone = leaderboard(redis_client, INSTITUTION, "day", limit=100)["entries"]
    mine = next(e for e in everyone if e["nickname"] == "绿友29")
    assert board["me"]["rank"] == mine["rank"] > 10 and board["me"]["points"] == mine["points"]
    assert set(board["entries"][0]) == {"rank", "nickname", "department", "points", "carbon_g"}
    assert board["entries"][0]["department"].startswith("第")


@pytest.mark.frozen_at(NOW)
def test_department_metrics_let_a_small_department_win(databases, redis_client, clean):
    deliver(databases, redis_client, [DepartmentsChanged(
        institution_id=INSTITUTION, institution_name="测试单位",
        departments=[{"id": 701, "name": "大处", "headcount": 100}, {"id": 702, "name": "小处", "headcount": 4}],
    )])
    deliver(databases, redis_client, [
        EmployeeBound(user_id=u, institution_id=INSTITUTION, department_id=701 if u <= 10 else 702,
                      employee_no=f"E{u}", nickname=f"n{u}") for u in range(1, 14)])
    at = (NOW - timedelta(hours=2)).isoformat()
    # Ten people in the big department and three of four in the small one each bring one clean plate (2 pts).
    deliver(databases, redis_client, [
        ActionRecorded(action_id=u, user_id=u, institution_id=INSTITUTION, department_id=701 if u <= 10 else 702,
                       action_type="clean_plate", variant="default", quantity="1", unit="meal", action_at=at)
        for u in range(1, 14)])
    total = Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "total")
    per_capita = Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "per_capita")
    share = Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "participation")
    per_plate = total["items"][0]["points"] // 10
    assert [(i["department"], i["points"]) for i in total["items"]] == [("大处", 10 * per_plate),
                                                                       ("小处", 3 * per_plate)]
    assert [(i["department"], i["value"]) for i in per_capita["items"]] == [
        ("小处", round(3 * per_plate / 4, 2)), ("大处", round(10 * per_plate / 100, 2))]
    assert [(i["department"], i["value"], i["participants"]) for i in share["items"]] == [
        ("小处", 0.75, 3), ("大处", 0.1, 10)]


@pytest.mark.frozen_at(NOW)
def test_hiding_keeps_counting_for_the_department_and_showing_again_lists_the_user(databases, redis_client, clean):
    roster(databases, redis_client, users=10)
    at = (NOW - timedelta(hours=1)).isoformat()
    deliver(databases, redis_client, [
        ActionRecorded(action_id=u, user_id=u, institution_id=INSTITUTION, department_id=DEPARTMENTS[u % 5],
                       action_type="commute", variant="bike", quantity=str(u), unit="km", action_at=at)
        for u in range(1, 11)])
    before = leaderboard(redis_client, INSTITUTION, "week", me_user_id=10)
    assert before["entries"][0]["nickname"] == "绿友10" and before["me"]["rank"] == 1
    departments_before = Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "total")


    Boards(databases["points"], redis_client).set_visibility(10, visible=False)
    hidden = leaderboard(redis_client, INSTITUTION, "week", me_user_id=10)
    assert "绿友10" not in [e["nickname"] for e in hidden["entries"]]
    assert hidden["total"] == before["total"] - 1
    assert hidden["entries"][0]["rank"] == 1 and hidden["me"] == {**before["me"], "hidden": True}
    assert (Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "total")
            == departments_before)
    assert differences(databases["points"], redis_client, INSTITUTION) == []

    Boards(databases["points"], redis_client).set_visibility(10, visible=True)
    assert leaderboard(redis_client, INSTITUTION, "week", me_user_id=10) == before
    # A nickname change reaches the boards without a new action.
    deliver(databases, redis_client, [EmployeeUpdated(user_id=10, institution_id=INSTITUTION,
                                                      department_id=DEPARTMENTS[0], employee_no="E0010",
                                                      nickname="骑行达人")])
    assert leaderboard(redis_client, INSTITUTION, "week")["entries"][0]["nickname"] == "骑行达人"


def _next_weekday(day, weekday: int):
    return day + timedelta(days=(weekday - day.weekday()) % 7 or 7)


def test_periods_roll_over_at_monday_midnight_and_month_end_in_shanghai(databases, redis_client, clean,
                                                                        frozen_clock):
    sunday = _next_weekday(_today, 6)
    sunday_late = datetime(sunday.year, sunday.month, sunday.day, 23, 59, 30, tzinfo=clock.LOCAL_TZ)
    monday = sunday_late + timedelta(seconds=40)  # Monday 00:00:10
    assert period_of("week", monday.date()).first == monday.date()
    week_before, week_after = period_of("week", sunday).key, period_of("week", monday.date()).key
    assert week_before != week_after
    # 16:00 UTC on Sunday is already Monday in Shanghai.
    utc_evening = datetime(sunday.year, sunday.month, sunday.day, 16, 0, 10, tzinfo=UTC)
    assert period_of("week", utc_evening.astimezone(clock.LOCAL_TZ).date()).key == week_after

    frozen_clock.set(sunday_late)
    roster(databases, redis_client, users=3)
    walk = dict(institution_id=INSTITUTION, department_id=DEPARTMENTS[1], action_type="commute", variant="walk",
                unit="km")
    deliver(databases, redis_client, [ActionRecorded(action_id=1, user_id=1, quantity="5",
                                                     action_at=sunday_late.isoformat(), **walk)])
    assert leaderboard(redis_client, INSTITUTION, "week")["period_key"] == week_before
    assert leaderboard(redis_client, INSTITUTION, "week")["total"] == 1

    frozen_clock.set(monday)
    week = leaderboard(redis_client, INSTITUTION, "week")
    assert (week["period_key"], week["total"]) == (week_after, 0)  # a new week starts empty
    assert leaderboard(redis_client, INSTITUTION, "day")["total"] == 0
    deliver(databases, redis_client, [ActionRecorded(action_id=2, user_id=2, quantity="3",
                                                     action_at=monday.isoformat(), **walk)])
    assert [e["nickname"] for e in leaderboard(redis_client, INSTITUTION, "week")["entries"]] == ["绿友2"]
    assert leaderboard(redis_client, INSTITUTION, "all")["total"] == 2
    keys = BoardKeys(INSTITUTION)
    day_board = keys.board(period_of("day", sunday).key)
    expected_ttl = period_of("day", sunday).expires_at() - time.time()  # the day's end + 7 days
    assert abs(redis_client.ttl(day_board) - expected_ttl) < 60
    assert redis_client.ttl(keys.board("all")) == -1

    # Month end: the last day of next month, 23:59:50, then ten seconds later.
    first_of_next = (_today.replace(day=1) + timedelta(days=32)).replace(day=1)
    last_day = (first_of_next + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    month_end = datetime(last_day.year, last_day.month, last_day.day, 23, 59, 50, tzinfo=clock.LOCAL_TZ)
    frozen_clock.set(month_end)
    deliver(databases, redis_client, [ActionRecorded(action_id=3, user_id=3, quantity="4",
                                                     action_at=month_end.isoformat(), **walk)])
    month = leaderboard(redis_client, INSTITUTION, "month")
    assert (month["period_key"], month["total"]) == (f"{last_day.year}-{last_day.month:02d}", 1)
    frozen_clock.set(month_end + timedelta(seconds=10))
    month = leaderboard(redis_client, INSTITUTION, "month")
    nxt = last_day + timedelta(days=1)
    assert (month["period_key"], month["total"]) == (f"{nxt.year}-{nxt.month:02d}", 0)
    assert leaderboard(redis_client, INSTITUTION, "all")["total"] == 3


@pytest.mark.frozen_at(NOW)
def test_an_older_department_snapshot_arriving_late_changes_nothing(databases, redis_client, clean):
    older = DepartmentsChanged(institution_id=INSTITUTION, institution_name="旧名",
                               departments=[{"id": 701, "name": "旧处", "headcount": 3}],
                               occurred_at=NOW - timedelta(minutes=5))
    newer = DepartmentsChanged(institution_id=INSTITUTION, institution_name="新名",
                               departments=[{"id": 701, "name": "新处", "headcount": 9},
                                            {"id": 702, "name": "二处", "headcount": 4}])
    deliver(databases, redis_client, [newer])
    deliver(databases, redis_client, [older])
    ranking = Boards(databases["points"], redis_client).department_ranking(INSTITUTION, "week", "total")
    assert [(i["department"], i["headcount"]) for i in ranking["items"]] == [("新处", 9), ("二处", 4)]
    assert redis_client.hgetall(BoardKeys(INSTITUTION).deptinfo) == {b"701": "新处".encode(), b"702": "二处".encode()}


@pytest.mark.frozen_at(NOW)
def test_after_redis_lost_everything_an_opted_out_user_is_still_never_listed(databases, redis_client, clean):

    roster(databases, redis_client, users=5)
    Boards(databases["points"], redis_client).set_visibility(4, visible=False)
    redis_client.flushdb()  # before anyone ran `lvbao boards rebuild`, credits keep coming
    at = (NOW - timedelta(hours=1)).isoformat()
    deliver(databases, redis_client, [
        ActionRecorded(action_id=u, user_id=u, institution_id=INSTITUTION, department_id=DEPARTMENTS[u % 5],
                       action_type="commute", variant="bike", quantity=str(2 * u), unit="km", action_at=at)
        for u in (3, 4)])
    board = leaderboard(redis_client, INSTITUTION, "week", me_user_id=4)
    assert [e["nickname"] for e in board["entries"]] == ["绿友3"] and board["total"] == 1
    assert board["me"]["hidden"] is True and board["me"]["rank"] == 1
    apply_pending(databases["points"], redis_client)  # the member refresh the mismatch asked for
    assert redis_client.sismember(BoardKeys(INSTITUTION).hidden_users, "4")
    with databases["points"].reader() as uow:
        assert uow.session.scalar(select(func.count()).select_from(BoardUpdate)) == 0
