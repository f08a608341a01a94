"""Reading the boards: individual leaderboards (one Redis round trip), department rankings, the office screen,
and an employee's choice to stay off boards."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError
from sqlalchemy import select

from services.points.boards import BoardKeys, apply_pending, note_refresh
from services.points.models import Department, Institution, Member
from services.points.periods import current
from shared import clock
from shared.db import Database
from shared.errors import ApiError

log = logging.getLogger("lvbao.points.boards")

# A plain equivalent for carbon saved, named on the screen: a popular-science figure often quoted in China
# (one tree takes up about 18.3 kg of CO2 a year). It illustrates; it is not part of any carbon account.
TREE_G_CO2_PER_YEAR = 18_300
TREE_FACTOR_NOTE = "按每棵树每年约吸收 18.3 千克二氧化碳估算（常见科普口径）"

# KEYS: board, its mirror (hidden users), its carbon hash, names, deptinfo.
# ARGV: limit, caller's user id or '', then period, period key, scope, scope id (echoed into the answer).
# Returns the whole answer as one JSON document (one round trip, one reply to parse): the top ``limit`` listed
# members with competition ranks (ties share a rank), the number listed, and the caller's own rank among the
# listed even when outside the top (or hidden: ranked, never listed).
READ_BOARD = """
local limit = tonumber(ARGV[1])
local hidden_n = redis.call('ZCARD', KEYS[2])
local total = redis.call('ZCARD', KEYS[1]) - hidden_n
local top = {}
local start, chunk = 0, limit + math.min(hidden_n, limit)
while #top < 2 * limit do
  local rows = redis.call('ZREVRANGE', KEYS[1], start, start + chunk - 1, 'WITHSCORES')
  if #rows == 0 then break end
  for i = 1, #rows, 2 do
    if #top < 2 * limit and (hidden_n == 0 or not redis.call('ZSCORE', KEYS[2], rows[i])) then
      top[#top + 1] = rows[i]
      top[#top + 1] = rows[i + 1]
    end
  end
  start = start + chunk
end
local entries = {}
if #top > 0 then
  local ids = {}
  for i = 1, #top, 2 do ids[#ids + 1] = top[i] end
  local carbon = redis.call('HMGET', KEYS[3], unpack(ids))
  local names = redis.call('HMGET', KEYS[4], unpack(ids))
  local depts, wanted = {}, {}
  for i = 1, #ids do
    local info = names[i] or ''
    local tab = string.find(info, '\t', 1, true)
    local nick, dept = info, ''
    if tab then nick, dept = string.sub(info, 1, tab - 1), string.sub(info, tab + 1) end
    names[i] = nick
    depts[i] = dept
    if dept ~= '' then wanted[#wanted + 1] = dept end
  end
  local dept_names = {}
  if #wanted > 0 then
    local found = redis.call('HMGET', KEYS[5], unpack(wanted))
    for i = 1, #wanted do dept_names[wanted[i]] = found[i] end
  end
  local rank, previous = 0, nil
  for i = 1, #ids do
    local points = tonumber(top[2 * i])
    if points ~= previous then rank, previous = i, points end
    local nick = names[i]
    if nick == '' then nick = '匿名' end
    local dept = dept_names[depts[i]]
    -- Written out rather than cjson.encode of a table: a third of the script's time on a 20-entry board.
    entries[i] = '{"rank":' .. rank .. ',"nickname":' .. cjson.encode(nick) .. ',"department":'
      .. (dept and cjson.encode(dept) or 'null') .. ',"points":' .. string.format('%d', points)
      .. ',"carbon_g":' .. string.format('%d', tonumber(carbon[i] or '0')) .. '}'
  end
end
local me = 'null'
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score then
    local above = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
    local hidden = false
    if hidden_n > 0 then
      above = above - redis.call('ZCOUNT', KEYS[2], '(' .. score, '+inf')
      hidden = redis.call('ZSCORE', KEYS[2], ARGV[2]) ~= false
    end
    me = cjson.encode({rank = above + 1, points = tonumber(score),
                       carbon_g = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0'), hidden = hidden})
  end
end
local head = cjson.encode({period = ARGV[3], period_key = ARGV[4], scope = ARGV[5], scope_id = tonumber(ARGV[6]),
                           total = total})
return string.sub(head, 1, -2) .. ',"entries":[' .. table.concat(entries, ',') .. '],"me":' .. me .. '}'
"""


READ_BOARD_SHA = hashlib.sha1(READ_BOARD.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


def leaderboard_json(redis: Redis, institution_id: int, period_kind: str, department_id: int | None = None,
                     limit: int = 20, me_user_id: int | None = None) -> bytes:
    """A board of the current period as the API answers it (JSON, made in Redis in one round trip)."""
    period = current(period_kind)
    keys = BoardKeys(institution_id)
    board = keys.board(period.key, department_id)
    scope, scope_id = ("institution", institution_id) if department_id is None else ("department", department_id)
    redis_keys = [board, keys.mirror(board), keys.carbon(board), keys.names, keys.deptinfo]
    args = [limit, "" if me_user_id is None else me_user_id, period_kind, period.key, scope, scope_id]
    try:
        return redis.evalsha(READ_BOARD_SHA, len(redis_keys), *redis_keys, *args)
    except NoScriptError:  # a Redis that restarted (or was flushed of scripts): load it and go on
        redis.script_load(READ_BOARD)
        return redis.evalsha(READ_BOARD_SHA, len(redis_keys), *redis_keys, *args)


def leaderboard(redis: Redis, institution_id: int, period_kind: str, department_id: int | None = None,
                limit: int = 20, me_user_id: int | None = None) -> dict[str, Any]:
    """The top ``limit`` of a board of the current period, the total listed, and the caller's own rank."""
    return json.loads(leaderboard_json(redis, institution_id, period_kind, department_id, limit, me_user_id))


METRICS = ("total", "per_capita", "participation")


def _totals(redis: Redis, keys: BoardKeys, period_kind: str) -> dict[str, Any]:
    period = current(period_kind)
    raw = redis.hgetall(keys.totals(period.key))
    carbon = int(raw.get(b"carbon_g", 0))
    return {"period_key": period.key, "points": int(raw.get(b"points", 0)), "carbon_g": carbon,
            "trees": round(carbon / TREE_G_CO2_PER_YEAR, 1)}


class Boards:
    """Boards, department rankings, the office screen and an employee's visibility on boards."""

    def __init__(self, db: Database, redis: Redis):
        self.db = db
        self.redis = redis

    def department_of(self, department_id: int) -> Department:
        with self.db.reader() as uow:
            department = uow.session.get(Department, department_id)
        if department is None:
            raise ApiError(404, "department_not_found", "部门不存在")
        return department

    def department_ranking(self, institution_id: int, period_kind: str, metric: str
                           ) -> dict[str, Any]:
        """Departments ranked by points (``total``), points per head of the roster (``per_capita``) or the share
        of the roster with points this period (``participation``): the last two let small departments win."""
        period = current(period_kind)
        keys = BoardKeys(institution_id)
        with self.db.reader() as uow:
            departments = uow.session.scalars(
                select(Department).where(Department.institution_id == institution_id).order_by(Department.id)).all()
        board = keys.departments(period.key)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(board, 0, -1, withscores=True)
        pipe.hgetall(keys.carbon(board))
        for department in departments:
            pipe.zcount(keys.board(period.key, department.id), "(0", "+inf")
        points_raw, carbon_raw, *participants = pipe.execute()
        points = {int(m): int(s) for m, s in points_raw}
        carbon = {int(f): int(v) for f, v in carbon_raw.items()}
        items = []
        for department, active in zip(departments, participants, strict=True):
            total = points.get(department.id, 0)
            head = department.headcount
            per_capita = round(total / head, 2) if head else 0.0
            participation = round(min(active, head) / head, 4) if head else 0.0
            value = {"total": total, "per_capita": per_capita, "participation": participation}[metric]
            items.append({"department_id": department.id, "department": department.name, "points": total,
                          "carbon_g": carbon.get(department.id, 0), "headcount": head, "participants": active,
                          "per_capita": per_capita, "participation": participation, "value": value})
        items.sort(key=lambda item: (-item["value"], item["department_id"]))
        previous, rank = None, 0
        for position, item in enumerate(items, start=1):
            if item["value"] != previous:
                rank, previous = position, item["value"]
            item["rank"] = rank
        return {"period": period_kind, "period_key": period.key, "metric": metric, "institution_id": institution_id,
                "items": items}

    def screen(self, institution_id: int, top: int = 10) -> dict[str, Any]:
        """Everything the office screen shows, in one payload: this week's top individuals and departments, this
        week's and month's totals with a plain equivalent, and the latest credits without names."""
        with self.db.reader() as uow:
            institution = uow.session.get(Institution, institution_id)
            name = institution.name if institution is not None else ""
        keys = BoardKeys(institution_id)
        ticker = [json.loads(item) for item in self.redis.lrange(keys.ticker, 0, 9)]
        return {
            "institution": {"id": institution_id, "name": name},
            "generated_at": clock.now(),
            "week": _totals(self.redis, keys, "week"),
            "month": _totals(self.redis, keys, "month"),
            "equivalent": {"unit": "tree_year", "g_co2_per_unit": TREE_G_CO2_PER_YEAR, "note": TREE_FACTOR_NOTE},
            "individuals": leaderboard(self.redis, institution_id, "week", limit=top),
            "departments": self.department_ranking(institution_id, "week", "per_capita"),
            "ticker": ticker,
        }

    def set_visibility(self, user_id: int, visible: bool) -> dict[str, Any]:
        """Show or hide the caller on every board (they keep counting for their department)."""
        with self.db.uow() as uow:
            member = uow.session.get(Member, user_id)
            if member is None:
                raise ApiError(409, "member_not_ready", "账户信息尚在同步，请稍后再试")
            member.board_opt_out = not visible
            note_refresh(uow.session, "member", user_id, member.institution_id)
            uow.commit()
        try:
            apply_pending(self.db, self.redis, only=("member", user_id))
        except Exception as exc:  # noqa: BLE001 - the row stays pending; the relay's sweeper applies it
            log.warning("board visibility left to the sweeper", extra={"user_id": user_id, "error": str(exc)})
        return {"visible": visible}

    def visibility(self, user_id: int | None) -> dict[str, Any]:
        with self.db.reader() as uow:
            member = uow.session.get(Member, user_id) if user_id is not None else None
            return {"visible": not (member is not None and member.board_opt_out)}
