"""`make bench`, part 4: a leaderboard read on a board of 1,000,000 members.

The board is made as production would make it after losing Redis: a million members' ledger entries in
PostgreSQL, then ``rebuild_institution`` (its time is a figure too). Then wrk reads
``GET /api/points/leaderboards?period=all&limit=20`` (top 20 plus the caller's own rank, one Redis round trip)
as 64 employees spread over the ranks, against the bare endpoint ``GET /bench/board`` on the same stack that
returns a constant payload of the same size. Both through the same gunicorn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis
import requests

from services.points.board_rebuild import rebuild_institution
from shared.db import Database

INSTITUTION = 900
MEMBERS = 1_000_000
DEPARTMENTS = 50
FIRST_UID = 20_000_000
READERS = 64

LEDGER_ROWS = f"""
INSERT INTO points.ledger_entries (user_id, institution_id, kind, points, carbon_g, balance_after, created_at,
    action_type, department_id, local_day, source_type, source_id, receipt)
SELECT {FIRST_UID} + g, {INSTITUTION}, 'award', 1 + (g::bigint * 7919) % 5000, (1 + (g::bigint * 7919) % 5000) * 50,
       1 + (g::bigint * 7919) % 5000, now(), 'commute', {INSTITUTION * 100} + g % {DEPARTMENTS}, current_date - 60,
       'bench_board', g::text, '{{}}'::json
FROM generate_series(1, {MEMBERS}) AS g
"""
MEMBER_ROWS = f"""
INSERT INTO points.members (user_id, institution_id, department_id, employee_no, nickname, facts_at, bound_at,
    board_opt_out)
SELECT {FIRST_UID} + g, {INSTITUTION}, {INSTITUTION * 100} + g % {DEPARTMENTS}, 'B' || g, '绿友' || g, now(), now(),
       g % 1000 = 0
FROM generate_series(1, {MEMBERS}) AS g
"""
DEPARTMENT_ROWS = f"""
INSERT INTO points.departments (id, institution_id, name, headcount, facts_at)
SELECT {INSTITUTION * 100} + d, {INSTITUTION}, '第' || (d + 1) || '处', {MEMBERS // DEPARTMENTS}, now()
FROM generate_series(0, {DEPARTMENTS - 1}) AS d
"""


def board_script(directory: Path, tokens: list[str], path: str) -> Path:
    lines = ["local tokens = {" + ",".join(f'"{t}"' for t in tokens) + "}", "local counter = 0",
             "function request()", "  counter = counter + 1",
             "  local token = tokens[(counter % #tokens) + 1]",
             f'  return wrk.format("GET", "{path}", {{["Authorization"] = "Bearer " .. token}})', "end"]
    script = directory / f"board-{abs(hash(path))}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def leaderboard_read(base: str, database_url: str, redis_url: str, work: Path, issue_tokens: Callable,
                     wrk: Callable, seconds: int, say: Callable[[str], None]) -> None:
    say(f"[4] leaderboard read on a board of {MEMBERS:,} members (top 20 + me)")
    started = time.monotonic()
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute(DEPARTMENT_ROWS)
        conn.execute(MEMBER_ROWS)
        conn.execute(LEDGER_ROWS)
    say(f"  {MEMBERS:,} members and ledger entries written to PostgreSQL in {time.monotonic() - started:.1f} s "
        f"(one in a thousand opted out; {DEPARTMENTS} departments)")
    points, client = Database(database_url, "points"), redis.Redis.from_url(redis_url)
    try:
        before = client.info("memory")["used_memory"]
        result = rebuild_institution(points, client, INSTITUTION)
        grown = (client.info("memory")["used_memory"] - before) / 2**20
    finally:
        points.dispose()
    say(f"  lvbao boards rebuild of that institution: {result['seconds']:.1f} s, {result['keys']} keys, "
        f"{result['all_time_members']:,} members on the all-time board, Redis +{grown:.0f} MiB")

    uids = [FIRST_UID + 1 + i * (MEMBERS // READERS) for i in range(READERS)]
    tokens = issue_tokens(uids, INSTITUTION)
    path = "/api/points/leaderboards?period=all&limit=20"
    sample = requests.get(base + path, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=10)
    sample.raise_for_status()
    body = sample.json()
    assert body["total"] > 0.99 * MEMBERS and len(body["entries"]) == 20 and body["me"] is not None, body
    payload = sample.content
    Path(work / "board-payload.json").write_bytes(payload)
    bare = requests.get(base + "/bench/board", timeout=10)
    bare.raise_for_status()
    say(f"  payload {len(payload)} bytes (bare endpoint {len(bare.content)} bytes); me of the first reader: "
        f"rank {body['me']['rank']:,} of {body['total']:,}")

    board_lua, bare_lua = board_script(work, tokens, path), board_script(work, tokens, "/bench/board")
    wrk(base + "/", board_lua, 3, latency=True)
    wrk(base + "/", bare_lua, 3, latency=True)
    rounds = []
    for _ in range(3):
        baseline = wrk(base + "/", bare_lua, seconds, latency=True)
        board = wrk(base + "/", board_lua, seconds, latency=True)
        rounds.append((baseline, board))
        say(f"  bare GET /bench/board {baseline['rps']:6.0f} req/s p99 {baseline['p99']}; "
            f"GET /api/points/leaderboards {board['rps']:6.0f} req/s p99 {board['p99']} "
            f"(non-2xx {baseline['non_2xx']}/{board['non_2xx']}); ratio {board['rps'] / baseline['rps']:.2f}")
    ratios = sorted(b["rps"] / a["rps"] for a, b in rounds)
    say(f"  ratio leaderboard / bare, median of 3: {ratios[1]:.2f}  (target >= 0.50)")

