"""`make bench`: the action write path and the credit lag, on PostgreSQL through gunicorn, with baselines
measured in the same run.

1. Throughput (wrk -t2 -c16): ``POST /api/activities/actions`` (token check, validation, plausibility checks,
   Idempotency-Key, action + outbox row in one transaction) against a baseline endpoint on the same stack that
   does one bare INSERT and commit. Target: ratio >= 0.6.
2. Lag: a steady 200 actions/s for 60 s; for each action, the time from sending the request to its ledger entry
   (relay -> RQ -> credit worker). Target: p99 < 2 s and no growing backlog.
3. Redemptions: 500 employees redeem one reward at once; the time until every redemption has settled
   (confirmed or rejected) through the saga with points.
4. Leaderboard read on a board of 1,000,000 members (bench/boards.py): throughput and p99 of the top 20 plus
   the caller's rank, against a bare endpoint on the same stack returning a constant payload of the same size.
   Target: ratio >= 0.5.

Needs PostgreSQL and Redis (defaults: the machine's, database ``lvbao_bench`` made afresh, Redis db 11) and
wrk. Prints figures; asserts nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import redis
import requests
from sqlalchemy import func, select

from bench.baseline import BOARD_PAYLOAD_ENV, DDL
from bench.boards import leaderboard_read
from bench.redemptions import redemption_burst
from lvbao.embedded import free_port
from shared import clock
from shared.db import Database

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG = os.environ.get("LVBAO_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("LVBAO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
# Sync workers: each takes one connection at a time, so the kernel spreads connections over the processes
# (gthread workers keep-alive connections wherever they were accepted, and one process may end up with all of
# wrk's connections while the others idle).
GUNICORN = os.environ.get("LVBAO_BENCH_GUNICORN", "--worker-class sync --workers 8").split()
WRK = ["-t2", "-c16"]
THROUGHPUT_SECONDS = int(os.environ.get("LVBAO_BENCH_SECONDS", "15"))
# Which parts to run (all by default): e.g. LVBAO_BENCH_PARTS=4 for the leaderboard read alone.
PARTS = {int(p) for p in os.environ.get("LVBAO_BENCH_PARTS", "1,2,3,4").split(",") if p.strip()}
ROUNDS = 3
LAG_RATE, LAG_SECONDS = 200, int(os.environ.get("LVBAO_BENCH_LAG_SECONDS", "60"))
EMPLOYEES = 40
SYNTHETIC_EMPLOYEES = 4000


def say(message: str) -> None:
    print(message, flush=True)


def fresh_database(name: str) -> str:
    parsed = urlparse(PG.replace("+psycopg", ""))
    dsn = f"host={parsed.hostname} port={parsed.port or 5432} user={parsed.username} dbname={parsed.path[1:]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG.rsplit("/", 1)[0] + f"/{name}"


class System:
    """gunicorn (every service + the baseline), the relay and one worker, as separate processes."""

    def __init__(self, database_url: str, redis_url: str, port: int, logs: Path):
        self.port, self.logs = port, logs
        self.base = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LVBAO_")}
        self.env.update({
            "LVBAO_DATABASE_URL": database_url, "LVBAO_REDIS_URL": redis_url,
            "LVBAO_JWKS_URL": f"{self.base}/api/auth/jwks.json", "LVBAO_WECHAT_BASE_URL": f"{self.base}/mock-wechat",
            "LVBAO_WECHAT_SECRET": "bench-wechat-secret", "LVBAO_OPERATOR_KEY_SECRET": "bench-operator-secret",
            "LVBAO_DEMO_ADMIN_PASSWORD": "bench-admin-password", "LVBAO_LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": str(logs / "metrics"), BOARD_PAYLOAD_ENV: str(logs / "board-payload.json"),
        })
        (logs / "metrics").mkdir(parents=True, exist_ok=True)
        self.children: list[subprocess.Popen] = []

    def lvbao(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lvbao.cli", *args], env=self.env, cwd=ROOT, check=True,
                              capture_output=True, text=True)

    def spawn(self, name: str, command: list[str]) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            self.children.append(subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> None:
        self.spawn("gunicorn", [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", *GUNICORN, "--log-level", "warning",
            "bench.baseline:create_app()"])
        self.spawn("relay", [sys.executable, "-m", "lvbao.cli", "relay", "--poll-interval", "0.05"])
        self.spawn("worker", [sys.executable, "-m", "lvbao.cli", "worker", "points", "activities", "rewards"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/api/auth/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise SystemExit("the system did not come up; see " + str(self.logs))

    def pipeline(self, running: bool) -> None:
        """Pause (SIGSTOP) or resume the relay and the worker: the write path measured alone, then with the
        credit pipeline sharing the machine."""
        for child in self.children[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGCONT if running else signal.SIGSTOP)

    def stop(self) -> None:
        self.pipeline(True)
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)


def employees(base: str, count: int) -> list[str]:
    http = requests.Session()
    tokens = []
    for i in range(count):
        code = http.post(f"{base}/mock-wechat/mock/login", json={"openid": f"o-bench-{i}"}).json()["code"]
        pair = http.post(f"{base}/api/auth/wechat/login", json={"code": code}).json()
        phone = http.post(f"{base}/mock-wechat/mock/phone-code", json={"phone": f"1380000{i:04d}"}).json()["code"]
        bound = http.post(f"{base}/api/auth/bind", json={"phone_code": phone},
                          headers={"Authorization": f"Bearer {pair['access_token']}"})
        bound.raise_for_status()
        tokens.append(http.post(f"{base}/api/auth/refresh",
                                json={"refresh_token": pair["refresh_token"]}).json()["access_token"])
    return tokens


def employee_tokens(database_url: str, uids, institution_id: int) -> list[str]:
    """Access tokens for further bound employees, signed with the gateway's key as the gateway signs them (what
    activities needs: a bound employee of an institution). A province has thousands of staff, each with a few
    trips a day; forty people posting thousands of trips each would measure an unreal history."""
    from services.gateway.keys import KeyRing
    from shared.auth.tokens import TokenIssuer
    from shared.config import Settings

    db = Database(database_url, "gateway")
    try:
        issuer = TokenIssuer(KeyRing(db).signing_key(), Settings.jwt_issuer, Settings.jwt_audience)
    finally:
        db.dispose()
    return [issuer.issue(f"user:{uid}", "access", 3600, uid=uid, roles=["employee"], inst=institution_id,
                         dept=None, bound=True)[0] for uid in uids]


def open_commute_rule(database_url: str) -> None:
    """A province commute version without a daily trip limit (as a pilot may publish), in force since long
    ago, so that thousands of benchmark trips are all accepted and credited."""
    from services.points.rules import _insert_version, default_rule_data

    data = {**default_rule_data()["commute"], "institution_id": None, "daily_count_limit": None,
            "daily_cap_points": None, "claim_window_days": 30,
            "effective_from": clock.now() - timedelta(days=365), "effective_to": None,
            "source": "benchmark: the default commute rule without daily limits"}
    db = Database(database_url, "points")
    try:
        with db.uow() as uow:
            _insert_version(uow, data, "bench")
            uow.commit()
    finally:
        db.dispose()


def wrk(url: str, script: Path, seconds: int, latency: bool = False) -> dict[str, float]:
    extra = ["--latency"] if latency else []
    out = subprocess.run(["wrk", *WRK, *extra, f"-d{seconds}s", "-s", str(script), url], capture_output=True,
                         text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+\w+)", out, re.MULTILINE)
    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else "",
            "latency_avg": latency.group(1) if latency else "?", "p99": p99.group(1) if p99 else "?"}


def action_script(directory: Path, tokens: list[str], base_epoch: int, prefix: str) -> Path:
    text = (HERE / "actions.lua").read_text()
    text = text.replace("{TOKENS}", "{" + ",".join(f'"{t}"' for t in tokens) + "}")
    text = text.replace("BASE_EPOCH", str(base_epoch)).replace("KEY_PREFIX", prefix).replace("THREADS", "2")
    path = directory / f"actions-{prefix}.lua"
    path.write_text(text)
    return path


def baseline_script(directory: Path) -> Path:
    path = directory / "baseline.lua"
    body = json.dumps({"type": "commute", "mode": "bus", "distance_km": 1, "occurred_at": "2026-01-01T08:00:00+08:00"})
    path.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
    return path


def backlog(points: Database, activities: Database, redis_client: redis.Redis, since_id: int) -> int:
    """Actions sent in the lag phase and not yet credited (outbox + queue + worker, all of it)."""
    from services.activities.models import Action
    from services.points.models import LedgerEntry

    with activities.reader() as uow:
        sent = uow.session.scalar(select(func.count(Action.id)).where(Action.id > since_id)) or 0
    with points.reader() as uow:
        credited = uow.session.scalar(
            select(func.count(LedgerEntry.id)).where(LedgerEntry.kind == "award",
                                                     func.cast(LedgerEntry.source_id, LedgerEntry.id.type) > since_id)
        ) or 0
    return sent - credited


def drain(points: Database, activities: Database, redis_client, since_id: int, timeout: float) -> float:
    started = time.monotonic()
    while backlog(points, activities, redis_client, since_id) > 0 and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return time.monotonic() - started


def steady_load(base: str, tokens: list[str], rate: int, seconds: int, base_epoch: int,
                on_tick) -> tuple[list[tuple[int, float]], list[float], float]:
    """Open loop: request i is due at t0 + i / rate whatever the answers' speed. Returns (action id, due time)
    pairs, response times counted from the due time (so a server that falls behind is not hidden by the
    client's queue), and how long sending took."""
    sent: list[tuple[int, float]] = []
    responses: list[float] = []
    errors: list[str] = []
    local = threading.local()
    wall0, t0 = time.time(), time.monotonic()

    def post(i: int) -> None:
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        due = wall0 + i / rate
        occurred = clock.as_utc(clock.now().fromtimestamp(base_epoch - i * 3, clock.LOCAL_TZ)).isoformat()
        response = http.post(f"{base}/api/activities/actions", timeout=10, json={
            "type": "commute", "mode": "bus", "distance_km": 1, "occurred_at": occurred},
            headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}", "Idempotency-Key": f"lag-{i}"})
        responses.append(time.time() - due)
        if response.status_code != 201 or response.json()["status"] != "accepted":
            errors.append(f"{response.status_code} {response.text[:200]}")
            return
        sent.append((response.json()["id"], due))

    next_tick = 1.0
    with ThreadPoolExecutor(max_workers=48) as pool:
        for i in range(rate * seconds):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(post, i)
            if time.monotonic() - t0 >= next_tick:
                on_tick(next_tick)
                next_tick += 1.0
    if errors:
        say(f"  {len(errors)} lag-phase requests failed, e.g. {errors[0]}")
    return sent, sorted(responses), time.monotonic() - t0


def credit_lags(points: Database, sent: list[tuple[int, float]]) -> list[float]:
    from services.points.models import LedgerEntry

    sent_at = {str(action_id): at for action_id, at in sent}
    with points.reader() as uow:
        rows = uow.session.execute(
            select(LedgerEntry.source_id, LedgerEntry.created_at).where(LedgerEntry.kind == "award",
                                                                        LedgerEntry.source_id.in_(list(sent_at)))
        ).all()
    return sorted(created.timestamp() - sent_at[source_id] for source_id, created in rows)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    database_url = fresh_database("lvbao_bench")
    redis_client = redis.Redis.from_url(REDIS)
    redis_client.flushdb()
    work = Path(tempfile.mkdtemp(prefix="lvbao-bench-"))
    system = System(database_url, REDIS, free_port(), work)
    system.lvbao("migrate")
    system.lvbao("seed-demo")
    open_commute_rule(database_url)
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute(DDL)
    points, activities = Database(database_url, "points"), Database(database_url, "activities")
    try:
        system.start()
        tokens = employees(system.base, EMPLOYEES)  # real sign-ins, the roster of the demo institution
        tokens += employee_tokens(database_url, range(100_000, 100_000 + SYNTHETIC_EMPLOYEES), 1)
        time.sleep(1)  # the relay hands the rule and the employees to activities
        cores = os.cpu_count()
        say(f"lvbao bench: PostgreSQL + Redis, gunicorn {' '.join(GUNICORN)}, "
            f"wrk {' '.join(WRK)}, {cores} cores, client on the same machine")

        if PARTS & {1, 2}:
            now = int(time.time())
            say(f"[1] throughput: {ROUNDS} rounds of baseline then actions, {THROUGHPUT_SECONDS} s each after warm-ups")
            wrk(f"{system.base}/bench/insert", baseline_script(work), 3)
            wrk(f"{system.base}/", action_script(work, tokens, now - 60, "warm"), 3)
            ratios, baseline = [], {"rps": 0.0}
            for round_no in range(ROUNDS):
                # This machine's figures drift by tens of percent from minute to minute: alternate, take medians.
                baseline = wrk(f"{system.base}/bench/insert", baseline_script(work), THROUGHPUT_SECONDS)
                system.pipeline(False)
                alone = wrk(f"{system.base}/", action_script(work, tokens, now - (3 + 12 * round_no) * 3600,
                                                             f"alone{round_no}"), THROUGHPUT_SECONDS)
                system.pipeline(True)
                ratios.append(alone["rps"] / baseline["rps"])
                say(f"  round {round_no + 1}: baseline POST /bench/insert (one INSERT + commit) {baseline['rps']:6.0f} "
                    f"req/s; POST /api/activities/actions (relay and worker paused) {alone['rps']:6.0f} req/s "
                    f"(non-2xx {baseline['non_2xx']}/{alone['non_2xx']}); ratio {ratios[-1]:.2f}")
                drain(points, activities, redis_client, 0, 120)
            say(f"  ratio actions / baseline, median of {ROUNDS}: {statistics.median(ratios):.2f}  (target >= 0.60)")
            drain(points, activities, redis_client, 0, 120)
            shared = wrk(f"{system.base}/", action_script(work, tokens, now - 60 * 3600, "shared"), THROUGHPUT_SECONDS)
            say(f"  actions   POST /api/activities/actions, crediting alongside: {shared['rps']:8.0f} req/s  "
                f"avg latency {shared['latency_avg']}  non-2xx {shared['non_2xx']}  "
                f"(ratio {shared['rps'] / baseline['rps']:.2f})")

            with activities.reader() as uow:
                from services.activities.models import Action

                last_id = uow.session.scalar(select(func.max(Action.id))) or 0
                statuses = dict(uow.session.execute(select(Action.status, func.count()).group_by(Action.status)).all())
            say(f"  actions stored by status: {statuses}")
            drained = drain(points, activities, redis_client, 0, 120)
            say(f"  their credits drained {drained:.1f} s after the load stopped")

            say(f"[2] credit lag at a steady {LAG_RATE} actions/s for {LAG_SECONDS} s")
            samples: list[tuple[float, int]] = []

            def tick(second: float) -> None:
                samples.append((second, backlog(points, activities, redis_client, last_id)))

            sent, responses, took = steady_load(system.base, tokens, LAG_RATE, LAG_SECONDS, now - 80 * 3600, tick)
            drain(points, activities, redis_client, last_id, 120)
            lags = credit_lags(points, sent)
            say(f"  {len(sent)} actions accepted, sent in {took:.1f} s ({len(sent) / took:.0f}/s achieved), "
                f"credited {len(lags)}")
            if responses:
                say(f"  response time from each request's due time: p50 {percentile(responses, 0.5) * 1000:.0f} ms, "
                    f"p99 {percentile(responses, 0.99) * 1000:.0f} ms")
            if lags:
                say(f"  lag due time -> credited balance: p50 {percentile(lags, 0.5) * 1000:.0f} ms, "
                    f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms  (target p99 < 2000 ms)")
            if samples:
                firsts = [b for s, b in samples if s <= LAG_SECONDS / 3]
                lasts = [b for s, b in samples if s > 2 * LAG_SECONDS / 3]
                say(f"  backlog (sent, not yet credited) sampled each second: first third avg "
                    f"{statistics.mean(firsts or [0]):.1f}, last third avg {statistics.mean(lasts or [0]):.1f}, "
                    f"max {max(b for _, b in samples)}")
        if 3 in PARTS:
            redemption_burst(system.base, database_url, tokens[EMPLOYEES:], list(range(100_000, 100_000 + 500)), 1,
                             say)
        if 4 in PARTS:
            leaderboard_read(system.base, database_url, REDIS, work,
                             lambda uids, inst: employee_tokens(database_url, uids, inst), wrk, THROUGHPUT_SECONDS,
                             say)
        return 0
    except BaseException:
        say(f"  the processes' logs are in {work}")
        raise
    finally:
        system.stop()
        points.dispose()
        activities.dispose()
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
