"""Boards recomputed from the ledger: ``lvbao boards rebuild`` (after Redis lost them) and ``lvbao boards check``.

A rebuild of one institution: set its ``rebuilding`` flag (from then on the add-entry and refresh scripts leave
their rows pending), read the ledger in one snapshot, write the boards under temporary keys, then in one
MULTI replace the live keys, mark the entries that were still pending as applied (the snapshot has them), and
clear the flag. Entries committed after the snapshot are applied afterwards from their pending rows.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from redis import Redis
from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from services.points.boards import TICKER_LENGTH, BoardKeys, name_info, ticker_item
from services.points.models import EARNING_KINDS, Account, BoardUpdate, Department, LedgerEntry, Member
from services.points.periods import Period, periods_of
from shared import clock
from shared.db import READ_ONLY, Database

log = logging.getLogger("lvbao.points.boards")

REBUILD_FLAG_SECONDS = 900
CHUNK = 10_000

# A board's expected content: key -> ("zset" | "hash", {member: int}).
State = dict[str, tuple[str, dict[str, int]]]


def live_periods(day: date) -> list[Period]:
    """The periods holding ``day`` whose boards have not expired (an expired period has no board)."""
    now = int(clock.now().timestamp())
    return [p for p in periods_of(day) if p.expires_at() is None or p.expires_at() > now]


@contextmanager
def snapshot(db: Database) -> Iterator[Session]:
    """A read-only session on one consistent snapshot (REPEATABLE READ on PostgreSQL; a WAL read on SQLite)."""
    with db.engine.connect() as conn:
        options: dict[str, Any] = {READ_ONLY: True}
        if not db.is_sqlite:
            options["isolation_level"] = "REPEATABLE READ"
        conn = conn.execution_options(**options)
        with conn.begin(), Session(bind=conn) as session:
            yield session


def institutions(session: Session) -> list[int]:
    """Every institution that has boards to rebuild: any account, member or department."""
    ids = session.scalars(union(select(Account.institution_id), select(Member.institution_id),
                                select(Department.institution_id)))
    return sorted(set(ids))


def _sums(session: Session, institution_id: int, period: Period):
    query = (
        select(LedgerEntry.user_id, LedgerEntry.department_id, func.sum(LedgerEntry.points),
               func.sum(LedgerEntry.carbon_g))
        .where(LedgerEntry.institution_id == institution_id, LedgerEntry.kind.in_(EARNING_KINDS))
        .group_by(LedgerEntry.user_id, LedgerEntry.department_id)
    )
    if period.first is not None:
        query = query.where(LedgerEntry.local_day >= period.first, LedgerEntry.local_day <= period.last)
    return session.execute(query)


def expected_state(session: Session, institution_id: int, day: date) -> State:
    """What every board of the institution for the periods holding ``day`` should hold, from the ledger."""
    keys = BoardKeys(institution_id)
    hidden = set(session.scalars(
        select(Member.user_id).where(Member.institution_id == institution_id, Member.board_opt_out.is_(True))))
    state: State = {}
    for period in live_periods(day):
        users: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        by_dept: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        depts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        totals = [0, 0]
        for user_id, dept_id, points, carbon in _sums(session, institution_id, period):
            points, carbon = int(points or 0), int(carbon or 0)
            for acc in (users[user_id], totals, *((by_dept[dept_id][user_id], depts[dept_id])
                                                  if dept_id is not None else ())):
                acc[0] += points
                acc[1] += carbon
        boards = [(keys.board(period.key), users)]
        boards += [(keys.board(period.key, d), members) for d, members in by_dept.items()]
        for board, members in boards:
            state[board] = ("zset", {str(u): v[0] for u, v in members.items() if v[0] > 0})
            state[keys.mirror(board)] = ("zset", {str(u): v[0] for u, v in members.items()
                                                  if v[0] > 0 and u in hidden})
            state[keys.carbon(board)] = ("hash", {str(u): v[1] for u, v in members.items() if v[1] != 0})
        dept_board = keys.departments(period.key)
        state[dept_board] = ("zset", {str(d): v[0] for d, v in depts.items() if v[0] > 0})
        state[keys.carbon(dept_board)] = ("hash", {str(d): v[1] for d, v in depts.items() if v[1] != 0})
        state[keys.totals(period.key)] = ("hash", {"points": totals[0], "carbon_g": totals[1]})
    return state


def _directory(session: Session, institution_id: int) -> State:
    """Names, who opted out, department names and the ticker: rebuilt with the boards, not compared."""
    keys = BoardKeys(institution_id)
    members = session.scalars(select(Member).where(Member.institution_id == institution_id)).all()
    departments = session.scalars(select(Department).where(Department.institution_id == institution_id)).all()
    recent = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.institution_id == institution_id, LedgerEntry.kind == "award", LedgerEntry.points > 0)
        .order_by(LedgerEntry.id.desc()).limit(TICKER_LENGTH)
    ).all()
    return {
        keys.names: ("hash", {str(m.user_id): name_info(m.nickname, m.department_id) for m in members}),
        keys.hidden_users: ("set", {str(m.user_id): 1 for m in members if m.board_opt_out}),
        keys.deptinfo: ("hash", {str(d.id): d.name for d in departments}),
        keys.ticker: ("list", {str(i): ticker_item(e) for i, e in enumerate(recent)}),
    }


def _period_patterns(keys: BoardKeys, day: date) -> list[str]:
    patterns = []
    for period in live_periods(day):
        board, departments = keys.board(period.key), keys.departments(period.key)
        patterns += [board, f"{board}:*", departments, f"{departments}:*", keys.totals(period.key)]
    return patterns


def _expiry(keys: BoardKeys, day: date) -> dict[str, int]:
    """The expiry of each period's keys, by base key (a board, its department boards, mirrors and carbon hashes
    are the base key or the base key followed by ``:``)."""
    return {key: period.expires_at() for period in live_periods(day) if period.expires_at()
            for key in (keys.board(period.key), keys.departments(period.key), keys.totals(period.key))}


def _write(pipe: Any, key: str, kind: str, mapping: dict[str, Any]) -> None:
    items = list(mapping.items())
    if kind == "list":
        pipe.rpush(key, *[value for _, value in sorted(items, key=lambda item: int(item[0]))])
        return
    for start in range(0, len(items), CHUNK):
        chunk = dict(items[start:start + CHUNK])
        if kind == "zset":
            pipe.zadd(key, chunk)
        elif kind == "set":
            pipe.sadd(key, *chunk)
        else:
            pipe.hset(key, mapping=chunk)


def rebuild_institution(db: Database, redis: Redis, institution_id: int, day: date | None = None) -> dict:
    """Recompute one institution's boards (periods holding ``day``, default today) from the ledger."""
    day = day or clock.local_now().date()
    keys = BoardKeys(institution_id)
    started = time.perf_counter()  # a duration, not a time of day: not the clock seam
    redis.set(keys.rebuilding, clock.now().isoformat(), ex=REBUILD_FLAG_SECONDS)
    try:
        with snapshot(db) as session:
            state = expected_state(session, institution_id, day)
            state.update(_directory(session, institution_id))
            pending = session.scalars(select(BoardUpdate.ref_id).where(
                BoardUpdate.kind == "entry", BoardUpdate.institution_id == institution_id)).all()
        expiry = _expiry(keys, day)
        temporary = {key: f"{keys.tag}:rebuild:{key[len(keys.tag) + 1:]}" for key in state}
        pipe = redis.pipeline(transaction=False)
        written = []
        for key, (kind, mapping) in state.items():
            pipe.delete(temporary[key])
            if not mapping:
                continue
            _write(pipe, temporary[key], kind, mapping)
            # Exact: the month's base key "…:p:2026-12" is also a prefix of the day's "…:p:2026-12-01".
            expires = next((at for base, at in expiry.items() if key == base or key.startswith(base + ":")), None)
            if expires:
                pipe.expireat(temporary[key], expires)
            written.append(key)
        pipe.execute()
        stale = {k.decode() if isinstance(k, bytes) else k
                 for pattern in _period_patterns(keys, day) for k in redis.scan_iter(match=pattern, count=1000)}
        swap = redis.pipeline(transaction=True)
        for key in stale | set(state):
            swap.delete(key)
        for key in written:
            swap.rename(temporary[key], key)
        now = int(clock.now().timestamp())
        for start in range(0, len(pending), CHUNK):
            swap.zadd(keys.applied, {str(entry_id): now for entry_id in pending[start:start + CHUNK]})
        swap.delete(keys.rebuilding)
        swap.execute()
    finally:
        redis.delete(keys.rebuilding)
    members = len(state[keys.board("all")][1])
    seconds = round(time.perf_counter() - started, 3)
    log.info("boards rebuilt", extra={"institution_id": institution_id, "keys": len(written), "seconds": seconds})
    return {"institution_id": institution_id, "keys": len(written), "all_time_members": members,
            "pending_marked": len(pending), "seconds": seconds}


def rebuild(db: Database, redis: Redis, institution_ids: list[int] | None = None, day: date | None = None):
    """Rebuild the boards of the given institutions (default: every one the ledger or roster knows)."""
    if institution_ids is None:
        with snapshot(db) as session:
            institution_ids = institutions(session)
    return [rebuild_institution(db, redis, i, day) for i in institution_ids]


def _read(redis: Redis, key: str, kind: str) -> dict[str, int]:
    if kind == "zset":
        return {m.decode(): int(s) for m, s in redis.zrange(key, 0, -1, withscores=True)}
    raw = redis.hgetall(key)
    return {f.decode(): int(v) for f, v in raw.items()}


def differences(db: Database, redis: Redis, institution_id: int, day: date | None = None, limit: int = 20
                ) -> list[str]:
    """How the institution's boards in Redis differ from the ledger (empty: they are equal). Totals missing
    in Redis count as zero; any other board key Redis has for these periods must be expected."""
    day = day or clock.local_now().date()
    keys = BoardKeys(institution_id)
    with snapshot(db) as session:
        expected = expected_state(session, institution_id, day)
    found: list[str] = []
    present = {k.decode() for pattern in _period_patterns(keys, day) for k in redis.scan_iter(match=pattern)}
    for key in sorted(present - set(expected)):
        found.append(f"{key}: in Redis, not in the ledger")
    for key, (kind, want) in expected.items():
        have = _read(redis, key, kind)
        if key.startswith(keys.totals("")):
            have = {"points": have.get("points", 0), "carbon_g": have.get("carbon_g", 0)}
        if have != want:
            wrong = sorted(set(have.items()) ^ set(want.items()))[:5]
            found.append(f"{key}: {len(want)} expected, {len(have)} in Redis; differing {wrong}")
        if len(found) >= limit:
            break
    return found
