"""Leaderboards in Redis: what they hold, and how credits reach them exactly once.

Every board of an institution lives under one Redis Cluster hash tag (``lb:{i<id>}``), so the scripts below
touch one slot. Per period (``periods.PERIODS``) there are:

- ``…:p:<period>`` the institution's board (user id -> points earned), ``…:p:<period>:d<dept>`` each
  department's; beside each, ``:carbon`` (user id -> grams) and ``:hidden`` (the scores of users who opted out:
  they count everywhere but are never listed, and reads subtract them from ranks and totals);
- ``…:depts:<period>`` department id -> points (and ``:carbon``), ``…:totals:<period>`` the institution's sums.

Boards rank points earned, not balance: award and reversal entries count, debits and refunds do not; a board
lists only members with more than 0 points. Besides: ``…:names`` (user id -> nickname and department id),
``…:deptinfo`` (department id -> name), ``…:hidden`` (who opted out), ``…:ticker`` (recent credits, no names).

PostgreSQL stays the source of truth. The credit step writes a ``board_updates`` row in the ledger's own
transaction; after the batch commits, :func:`apply_pending` hands the rows to Redis and deletes them. A ledger
entry is added by one script that first records its id in ``…:applied``, so re-applying it (a crash between
Redis and the delete, the sweeper racing a worker) changes nothing. While ``lvbao boards rebuild`` recomputes an
institution from the ledger (services.points.board_rebuild) the scripts leave its rows pending.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from redis import Redis
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.points.models import EARNING_KINDS, BoardUpdate, Department, LedgerEntry, Member
from services.points.periods import PERIODS, Period, current, periods_of
from shared import clock
from shared.db import Database, insert_for

log = logging.getLogger("lvbao.points.boards")

TICKER_LENGTH = 30
# An applied entry's id is remembered this long: far longer than a pending row can wait for its applier.
APPLIED_MEMORY_SECONDS = 2 * 24 * 3600
NO_DEPARTMENT = "-"


class BoardKeys:
    """The Redis keys of one institution's boards."""

    def __init__(self, institution_id: int):
        self.institution_id = institution_id
        self.tag = f"lb:{{i{institution_id}}}"
        self.applied = f"{self.tag}:applied"
        self.rebuilding = f"{self.tag}:rebuilding"
        self.hidden_users = f"{self.tag}:hidden"
        self.names = f"{self.tag}:names"
        self.deptinfo = f"{self.tag}:deptinfo"
        self.ticker = f"{self.tag}:ticker"

    def board(self, period_key: str, department_id: int | str | None = None) -> str:
        base = f"{self.tag}:p:{period_key}"
        return base if department_id is None else f"{base}:d{department_id}"

    def departments(self, period_key: str) -> str:
        return f"{self.tag}:depts:{period_key}"

    def totals(self, period_key: str) -> str:
        return f"{self.tag}:totals:{period_key}"

    @staticmethod
    def carbon(board: str) -> str:
        return f"{board}:carbon"

    @staticmethod
    def mirror(board: str) -> str:
        return f"{board}:hidden"

    def period_keys(self, period: Period, department_id: int | None) -> list[str]:
        """The nine keys a credit in ``period`` touches, in the order the add-entry script expects."""
        board = self.board(period.key)
        dept_board = self.board(period.key, department_id if department_id is not None else NO_DEPARTMENT)
        depts = self.departments(period.key)
        return [board, self.mirror(board), self.carbon(board), dept_board, self.mirror(dept_board),
                self.carbon(dept_board), depts, self.carbon(depts), self.totals(period.key)]


def name_info(nickname: str | None, department_id: int | None) -> str:
    return f"{nickname or ''}\t{'' if department_id is None else department_id}"


# KEYS: applied, rebuilding, hidden users, names, ticker, then 9 per period (BoardKeys.period_keys) x 4.
# ARGV: entry id, user id, department id or '', points, carbon, now, name info or '', ticker item or '',
#       ticker length, the expiry (unix time, 0 = none) of each period's keys, how long applied ids are kept,
#       '1' if the database says the user opted out.
# Returns 0 (a rebuild is running: left pending), 1 (added), 2 (added before) or 3 (added, but Redis and the
# database disagreed on the user's opt-out: counted as hidden, and the member wants a refresh).
ADD_ENTRY = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 2 end
local now = tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[10 + 4]))
local uid, dept = ARGV[2], ARGV[3]
local pts, carbon = tonumber(ARGV[4]), tonumber(ARGV[5])
local hidden = redis.call('SISMEMBER', KEYS[3], uid) == 1
local outcome = 1
if (ARGV[15] == '1') ~= hidden then
  -- Redis lost (or is behind on) who opted out: err on the side of hiding until the refresh settles it.
  outcome = 3
  if ARGV[15] == '1' then
    hidden = true
    redis.call('SADD', KEYS[3], uid)
  end
end
if ARGV[7] ~= '' then redis.call('HSETNX', KEYS[4], uid, ARGV[7]) end
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[5], ARGV[8])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[9]) - 1)
end
local function bump(board, mirror, carbon_hash, member, mirrored)
  if pts ~= 0 then
    local score = tonumber(redis.call('ZINCRBY', board, pts, member))
    if score <= 0 then redis.call('ZREM', board, member) end
    if mirrored then
      if score <= 0 then redis.call('ZREM', mirror, member) else redis.call('ZADD', mirror, score, member) end
    end
  end
  if carbon ~= 0 and tonumber(redis.call('HINCRBY', carbon_hash, member, carbon)) == 0 then
    redis.call('HDEL', carbon_hash, member)
  end
end
for i = 0, 3 do
  local b = 5 + i * 9
  bump(KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], uid, hidden)
  if dept ~= '' then
    bump(KEYS[b + 4], KEYS[b + 5], KEYS[b + 6], uid, hidden)
    bump(KEYS[b + 7], nil, KEYS[b + 8], dept, false)
  end
  redis.call('HINCRBY', KEYS[b + 9], 'points', pts)
  redis.call('HINCRBY', KEYS[b + 9], 'carbon_g', carbon)
  local expires = tonumber(ARGV[10 + i])
  if expires > 0 then
    for k = b + 1, b + 9 do redis.call('EXPIREAT', KEYS[k], expires) end
  end
end
return outcome
"""

# KEYS: rebuilding, hidden users, names, then (board, its mirror) pairs. ARGV: user id, name info, '1' if hidden.
REFRESH_MEMBER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local uid, hidden = ARGV[1], ARGV[3] == '1'
redis.call('HSET', KEYS[3], uid, ARGV[2])
if hidden then redis.call('SADD', KEYS[2], uid) else redis.call('SREM', KEYS[2], uid) end
for k = 4, #KEYS, 2 do
  local score = redis.call('ZSCORE', KEYS[k], uid)
  if hidden and score then
    redis.call('ZADD', KEYS[k + 1], score, uid)
    local ttl = redis.call('PTTL', KEYS[k])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[k + 1], ttl) end
  else
    redis.call('ZREM', KEYS[k + 1], uid)
  end
end
return 1
"""

# KEYS: rebuilding, deptinfo. ARGV: department id, name, department id, name, ...
REFRESH_DEPARTMENTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
for k = 1, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[k], ARGV[k + 1]) end
return 1
"""


class BoardScripts:
    """The scripts bound to one Redis client (EVALSHA; loaded again if Redis forgot them)."""

    def __init__(self, redis: Redis):
        self.add_entry = redis.register_script(ADD_ENTRY)
        self.refresh_member = redis.register_script(REFRESH_MEMBER)
        self.refresh_departments = redis.register_script(REFRESH_DEPARTMENTS)


# -- in the credit step's transaction ------------------------------------------------------------------------


def note_entry(session: Session, entry: LedgerEntry) -> None:
    """Mark a ledger entry for the boards, in its own transaction (entries that move nothing are skipped)."""
    if entry.kind not in EARNING_KINDS or (entry.points == 0 and entry.carbon_g == 0):
        return
    session.execute(
        insert_for(session)(BoardUpdate)
        .values(kind="entry", ref_id=entry.id, institution_id=entry.institution_id, version=1,
                created_at=clock.now())
        .on_conflict_do_nothing(index_elements=["kind", "ref_id"])
    )


def note_refresh(session: Session, kind: str, ref_id: int, institution_id: int) -> None:
    """Ask for a member's (or an institution's departments') board facts to be refreshed."""
    stmt = insert_for(session)(BoardUpdate).values(
        kind=kind, ref_id=ref_id, institution_id=institution_id, version=1, created_at=clock.now())
    session.execute(stmt.on_conflict_do_update(
        index_elements=["kind", "ref_id"],
        set_={"version": BoardUpdate.version + 1, "institution_id": institution_id},
    ))


# -- after commit: into Redis ---------------------------------------------------------------------------------


def ticker_item(entry: LedgerEntry) -> str:
    """A credit as the office screen's ticker shows it: what and how much, never who."""
    if entry.kind != "award" or entry.points <= 0:
        return ""
    receipt = entry.receipt or {}
    return json.dumps({
        "action_type": entry.action_type, "variant": receipt.get("variant"), "quantity": receipt.get("quantity"),
        "unit": receipt.get("unit"), "points": entry.points, "carbon_g": entry.carbon_g,
        "at": entry.created_at.isoformat(),
    }, ensure_ascii=False)


def add_entry_call(keys: BoardKeys, entry: LedgerEntry, member: Member | None, now: int) -> tuple[list, list]:
    """KEYS and ARGV of the add-entry script for one ledger entry."""
    periods = periods_of(entry.local_day) if entry.local_day is not None else []
    if len(periods) != len(PERIODS):
        raise ValueError(f"ledger entry {entry.id} has no local day")
    redis_keys = [keys.applied, keys.rebuilding, keys.hidden_users, keys.names, keys.ticker]
    for period in periods:
        redis_keys += keys.period_keys(period, entry.department_id)
    info = name_info(member.nickname, member.department_id) if member is not None else ""
    args = [entry.id, entry.user_id, "" if entry.department_id is None else entry.department_id,
            entry.points, entry.carbon_g, now, info, ticker_item(entry), TICKER_LENGTH,
            *[period.expires_at() or 0 for period in periods], APPLIED_MEMORY_SECONDS,
            "1" if member is not None and member.board_opt_out else "0"]
    return redis_keys, args


def member_boards(session: Session, keys: BoardKeys, user_id: int) -> list[str]:
    """The current boards a user can be on: the institution's, and every department they earned in."""
    departments = session.scalars(
        select(LedgerEntry.department_id)
        .where(LedgerEntry.user_id == user_id, LedgerEntry.kind.in_(EARNING_KINDS),
               LedgerEntry.department_id.is_not(None))
        .distinct()
    ).all()
    boards = []
    for kind in PERIODS:
        period = current(kind)
        boards.append(keys.board(period.key))
        boards += [keys.board(period.key, d) for d in departments]
    return boards


def apply_pending(db: Database, redis: Redis, limit: int = 500, older_than: timedelta | None = None,
                  only: tuple[str, int] | None = None) -> dict:
    """Hand pending board updates to Redis (oldest first, at most ``limit``) and forget the ones Redis took.

    Workers call it after each batch; the relay's sweeper calls it with ``older_than`` for what a crashed or
    Redis-less worker left; a view that just asked for one refresh passes it as ``only`` (kind, ref id). Rows
    another applier holds are skipped (PostgreSQL ``SKIP LOCKED``)."""
    counts = {"applied": 0, "repeated": 0, "deferred": 0}
    scripts = BoardScripts(redis)
    now = int(clock.now().timestamp())
    with db.uow() as uow:
        session = uow.session
        query = select(BoardUpdate).order_by(BoardUpdate.id).limit(limit)
        if older_than is not None:
            query = query.where(BoardUpdate.created_at <= clock.now() - older_than)
        if only is not None:
            query = query.where(BoardUpdate.kind == only[0], BoardUpdate.ref_id == only[1])
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = session.scalars(query).all()
        if not rows:
            return counts
        entry_ids = [r.ref_id for r in rows if r.kind == "entry"]
        entries = {e.id: e for e in session.scalars(select(LedgerEntry).where(LedgerEntry.id.in_(entry_ids)))}
        user_ids = {e.user_id for e in entries.values()} | {r.ref_id for r in rows if r.kind == "member"}
        members = {m.user_id: m for m in session.scalars(select(Member).where(Member.user_id.in_(user_ids)))}
        pipe = redis.pipeline(transaction=False)
        applied_rows: list[BoardUpdate] = []
        for row in rows:
            keys = BoardKeys(row.institution_id)
            if row.kind == "entry":
                entry = entries.get(row.ref_id)
                if entry is None:  # cannot happen (the ledger is append-only); the row is dropped
                    log.error("board update for a missing ledger entry", extra={"entry_id": row.ref_id})
                    pipe.echo("2")
                else:
                    redis_keys, args = add_entry_call(keys, entry, members.get(entry.user_id), now)
                    scripts.add_entry(redis_keys, args, client=pipe)
            elif row.kind == "member":
                member = members.get(row.ref_id)
                if member is None:
                    pipe.echo("2")
                else:
                    boards = member_boards(session, keys, member.user_id)
                    pairs = [k for board in boards for k in (board, keys.mirror(board))]
                    scripts.refresh_member(
                        [keys.rebuilding, keys.hidden_users, keys.names, *pairs],
                        [member.user_id, name_info(member.nickname, member.department_id),
                         "1" if member.board_opt_out else "0"],
                        client=pipe)
            else:
                departments = session.scalars(select(Department).where(Department.institution_id == row.ref_id))
                args = [v for d in departments for v in (d.id, d.name)]
                scripts.refresh_departments([keys.rebuilding, keys.deptinfo], args, client=pipe)
            applied_rows.append(row)
        results = pipe.execute()
        done = []
        for row, result in zip(applied_rows, results, strict=True):
            outcome = int(result)
            counts[("deferred", "applied", "repeated", "applied")[outcome]] += 1
            if outcome == 3:  # the opt-out in Redis was not the database's: refresh the member
                note_refresh(session, "member", entries[row.ref_id].user_id, row.institution_id)
            if outcome:
                done.append(row)
        entry_rows = [row.id for row in done if row.kind == "entry"]
        if entry_rows:
            session.execute(delete(BoardUpdate).where(BoardUpdate.id.in_(entry_rows)))
        for row in done:
            if row.kind != "entry":  # a refresh asked for again meanwhile (a newer version) stays
                session.execute(
                    delete(BoardUpdate).where(BoardUpdate.id == row.id, BoardUpdate.version == row.version))
        uow.commit()
    if counts["deferred"]:
        log.info("board updates deferred while a rebuild runs", extra=counts)
    return counts


def sweep_pending(db: Database, redis: Redis, older_than: timedelta = timedelta(seconds=20)) -> int:
    """The relay's chore: apply what workers left pending (crashed, or Redis was down) until none is left."""
    applied = 0
    while True:
        counts = apply_pending(db, redis, older_than=older_than)
        applied += counts["applied"] + counts["repeated"]
        if sum(counts.values()) < 500 or counts["deferred"]:
            return applied
