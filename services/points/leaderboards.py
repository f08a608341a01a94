"""Reading the boards: individual leaderboards (one Redis round trip), department rankings, the office screen,
and an employee's choice to stay off boards."""

from __future__ import annotations

import json
import logging
from typing import Any

from redis import Redis
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

# KEYS: board, its mirror (hidden users), its carbon hash, names, deptinfo. ARGV: limit, caller's user id or ''.
# Returns: listed total, top (member, score, ...), their carbon, their names, me (score, rank, hidden, carbon)
# or {}, deptinfo. Ranks are competition ranks among listed members: ties share a rank.
READ_BOARD = """
local limit = tonumber(ARGV[1])
local hidden_n = redis.call('ZCARD', KEYS[2])
local total = redis.call('ZCARD', KEYS[1]) - hidden_n
local top = {}
local start, chunk = 0, limit + hidden_n
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
local ids = {}
for i = 1, #top, 2 do ids[#ids + 1] = top[i] end
local carbon, names = {}, {}
if #ids > 0 then
  carbon = redis.call('HMGET', KEYS[3], unpack(ids))
  names = redis.call('HMGET', KEYS[4], unpack(ids))
end
local me = {}
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if score then
    local above = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
    if hidden_n > 0 then above = above - redis.call('ZCOUNT', KEYS[2], '(' .. score, '+inf') end
    local hidden = 0
    if hidden_n > 0 and redis.call('ZSCORE', KEYS[2], ARGV[2]) then hidden = 1 end
    me = {score, above + 1, hidden, redis.call('HGET', KEYS[3], ARGV[2]) or '0'}
  end
end
return {total, top, carbon, names, me, redis.call('HGETALL', KEYS[5])}
"""

def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


def leaderboard(redis: Redis, institution_id: int, period_kind: str, department_id: int | None = None,
                limit: int = 20, me_user_id: int | None = None) -> dict[str, Any]:
    """The top ``limit`` of a board of the current period, the total listed, and the caller's own rank."""
    period = current(period_kind)
    keys = BoardKeys(institution_id)
    board = keys.board(period.key, department_id)
    total, top, carbon, names, me, deptinfo = redis.register_script(READ_BOARD)(
        keys=[board, keys.mirror(board), keys.carbon(board), keys.names, keys.deptinfo],
        args=[limit, "" if me_user_id is None else me_user_id],
    )
    departments = {_text(deptinfo[i]): _text(deptinfo[i + 1]) for i in range(0, len(deptinfo), 2)}
    entries, rank, previous = [], 0, None
    for position in range(len(top) // 2):
        points = int(float(top[2 * position + 1]))
        if points != previous:
            rank, previous = position + 1, points
        nickname, _, dept = _text(names[position]).partition("\t")
        entries.append({"rank": rank, "nickname": nickname or "匿名", "department": departments.get(dept),
                        "points": points, "carbon_g": int(carbon[position] or 0)})
    mine = None
    if me:
        mine = {"rank": int(me[1]), "points": int(float(me[0])), "carbon_g": int(me[3]), "hidden": bool(me[2])}
    return {"period": period_kind, "period_key": period.key,
            "scope": "institution" if department_id is None else "department",
            "scope_id": institution_id if department_id is None else department_id,
            "entries": entries, "me": mine, "total": int(total)}


def department_of(db: Database, department_id: int) -> Department:
    with db.reader() as uow:
        department = uow.session.get(Department, department_id)
    if department is None:
        raise ApiError(404, "department_not_found", "部门不存在")
    return department


METRICS = ("total", "per_capita", "participation")


def department_ranking(db: Database, redis: Redis, institution_id: int, period_kind: str, metric: str
                       ) -> dict[str, Any]:
    """Departments ranked by points (``total``), points per head of the roster (``per_capita``) or the share
    of the roster with points this period (``participation``): the last two let small departments win."""
    period = current(period_kind)
    keys = BoardKeys(institution_id)
    with db.reader() as uow:
        departments = uow.session.scalars(
            select(Department).where(Department.institution_id == institution_id).order_by(Department.id)).all()
    board = keys.departments(period.key)
    pipe = redis.pipeline(transaction=False)
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


def _totals(redis: Redis, keys: BoardKeys, period_kind: str) -> dict[str, Any]:
    period = current(period_kind)
    raw = redis.hgetall(keys.totals(period.key))
    carbon = int(raw.get(b"carbon_g", 0))
    return {"period_key": period.key, "points": int(raw.get(b"points", 0)), "carbon_g": carbon,
            "trees": round(carbon / TREE_G_CO2_PER_YEAR, 1)}


def screen(db: Database, redis: Redis, institution_id: int, top: int = 10) -> dict[str, Any]:
    """Everything the office screen shows, in one payload: this week's top individuals and departments, this
    week's and month's totals with a plain equivalent, and the latest credits without names."""
    with db.reader() as uow:
        institution = uow.session.get(Institution, institution_id)
        name = institution.name if institution is not None else ""
    keys = BoardKeys(institution_id)
    ticker = [json.loads(item) for item in redis.lrange(keys.ticker, 0, 9)]
    return {
        "institution": {"id": institution_id, "name": name},
        "generated_at": clock.now(),
        "week": _totals(redis, keys, "week"),
        "month": _totals(redis, keys, "month"),
        "equivalent": {"unit": "tree_year", "g_co2_per_unit": TREE_G_CO2_PER_YEAR, "note": TREE_FACTOR_NOTE},
        "individuals": leaderboard(redis, institution_id, "week", limit=top),
        "departments": department_ranking(db, redis, institution_id, "week", "per_capita"),
        "ticker": ticker,
    }


def set_board_visibility(db: Database, redis: Redis, user_id: int, visible: bool) -> dict[str, Any]:
    """Show or hide the caller on every board (they keep counting for their department)."""
    with db.uow() as uow:
        member = uow.session.get(Member, user_id)
        if member is None:
            raise ApiError(409, "member_not_ready", "账户信息尚在同步，请稍后再试")
        member.board_opt_out = not visible
        note_refresh(uow.session, "member", user_id, member.institution_id)
        uow.commit()
    try:
        apply_pending(db, redis, only=("member", user_id))
    except Exception as exc:  # noqa: BLE001 - the row stays pending; the relay's sweeper applies it
        log.warning("board visibility left to the sweeper", extra={"user_id": user_id, "error": str(exc)})
    return {"visible": visible}


def board_visibility(db: Database, user_id: int | None) -> dict[str, Any]:
    with db.reader() as uow:
        member = uow.session.get(Member, user_id) if user_id is not None else None
        return {"visible": not (member is not None and member.board_opt_out)}
