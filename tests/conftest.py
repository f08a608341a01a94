"""Test fixtures: real PostgreSQL and Redis when reachable, embedded SQLite and Redis otherwise.

With ``CI`` or ``LVBAO_TEST_REQUIRE_SERVERS`` set, a missing PostgreSQL or Redis fails the run instead of
falling back (``make test-pg`` sets the latter, and checks both before the first test).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import redis as redis_lib
import requests
from sqlalchemy import text
from werkzeug.serving import make_server

from lvbao import registry
from lvbao.embedded import create_combined_app, free_port
from shared import clock
from shared.config import Settings
from shared.current import parts_of
from shared.migrations import upgrade

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
REQUIRE_SERVERS = "LVBAO_TEST_REQUIRE_SERVERS"
# Every test is one of these (its folder's `pytestmark`); a test with none of them fails the run.
LEVELS = ("unit", "integration", "contract", "e2e", "browser")


def _reachable(url: str) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _servers_required() -> str | None:
    """Why a missing PostgreSQL or Redis is fatal here (CI, or `make test-pg`), or None to fall back."""
    if os.environ.get(REQUIRE_SERVERS):
        return f"{REQUIRE_SERVERS} (make test-pg)"
    if os.environ.get("CI"):
        return "CI"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """With the servers required, refuse at once (before any test) to run without them."""
    if not os.environ.get(REQUIRE_SERVERS):
        return
    database = os.environ.get("LVBAO_TEST_DATABASE_URL", DEFAULT_PG)
    redis_url = os.environ.get("LVBAO_TEST_REDIS_URL", DEFAULT_REDIS)
    problems = []
    if database.startswith("sqlite"):
        problems.append(f"LVBAO_TEST_DATABASE_URL is SQLite ({database}), not PostgreSQL")
    elif not _reachable(database):
        problems.append(f"PostgreSQL at {database} is not reachable")
    if not _reachable(redis_url):
        problems.append(f"Redis at {redis_url} is not reachable")
    if problems:
        pytest.exit(f"{REQUIRE_SERVERS} is set (no SQLite or embedded Redis fallback): " + "; ".join(problems)
                    + ". Start them, or point LVBAO_TEST_DATABASE_URL / LVBAO_TEST_REDIS_URL at them.", returncode=3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every collected test carries its level's marker (its module's `pytestmark`)."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(level) for level in LEVELS)]
    if unmarked:
        raise pytest.UsageError(
            "tests without a level marker (" + " | ".join(LEVELS) + "); add `pytestmark = pytest.mark.<level>` "
            "to their module:\n  " + "\n  ".join(unmarked))


def _choose_redis_url(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object | None]:
    url = os.environ.get("LVBAO_TEST_REDIS_URL", DEFAULT_REDIS)
    if _reachable(url):
        return url, None
    if required := _servers_required():
        pytest.exit(f"{required}: Redis at {url} is not reachable", returncode=3)
    from lvbao.embedded import EmbeddedRedis

    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    return embedded.start(), embedded


def _choose_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("LVBAO_TEST_DATABASE_URL", DEFAULT_PG)
    if url.startswith("sqlite"):
        if os.environ.get(REQUIRE_SERVERS):
            pytest.exit(f"{REQUIRE_SERVERS}: the test database is SQLite ({url}), not PostgreSQL", returncode=3)
        return url
    if _reachable(url):
        return url
    if required := _servers_required():
        pytest.exit(f"{required}: PostgreSQL at {url} is not reachable", returncode=3)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'lvbao.db'}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url, embedded = _choose_redis_url(tmp_path_factory)
    yield url
    if embedded is not None:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    return _choose_database_url(tmp_path_factory)


@pytest.fixture
def redis_client(redis_url):
    """A Redis connection on the tests' own database, empty at the start of each test."""
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# -- the clock ---------------------------------------------------------------------------------------------------


class FrozenClock:
    """The clock seam (`shared.clock`) frozen for one test; the `frozen_clock` fixture unfreezes it after."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request

    def set(self, moment: datetime, *, signing_key: bool = False) -> datetime:
        """Freeze at ``moment`` (timezone-aware) and return it. With ``signing_key``, a signing key is made first,
        at the real time, so tokens issued at any frozen time verify whatever order the tests run in."""
        if signing_key:
            from tests.support import freeze

            freeze(self._request.getfixturevalue("databases"), moment)
        else:
            clock.set_time(moment)
        return moment

    def advance(self, delta: timedelta | None = None, *, signing_key: bool = False, **parts: float) -> datetime:
        """Move the clock on from now (frozen or not) by ``delta`` or ``timedelta(**parts)``; returns the moment."""
        return self.set(clock.now() + (delta if delta is not None else timedelta(**parts)), signing_key=signing_key)

    def unfreeze(self) -> None:
        clock.set_time(None)

    @property
    def now(self) -> datetime:
        return clock.now()


@pytest.fixture
def frozen_clock(request):
    """Time for one test, always unfrozen after it: ``frozen_clock.set(moment)``, ``frozen_clock.advance(
    minutes=5)``. A test (or module, in its `pytestmark`) marked ``frozen_at(moment)`` starts frozen there: after
    `clean` when the test uses it, and with a signing key made first when it uses the databases."""
    frozen = FrozenClock(request)
    marker = request.node.get_closest_marker("frozen_at")
    if marker is not None:
        if "clean" in request.fixturenames:
            request.getfixturevalue("clean")
        frozen.set(*marker.args, **{"signing_key": "databases" in request.fixturenames, **marker.kwargs})
    yield frozen
    clock.set_time(None)


@pytest.fixture(autouse=True)
def _frozen_at_marker(request):
    """A test marked ``frozen_at(moment)`` gets the frozen clock before its other fixtures."""
    if request.node.get_closest_marker("frozen_at") is not None:
        request.getfixturevalue("frozen_clock")


# -- the system under test ----------------------------------------------------------------------------------------


# Kept across tests: truncating the signing keys would make every verifier's cached JWKS stale.
KEEP_TABLES = {"alembic_version", "signing_keys"}


@pytest.fixture(scope="session")
def server_port():
    return free_port()


@pytest.fixture(scope="session")
def settings(database_url, redis_url, server_port) -> Settings:
    base = f"http://127.0.0.1:{server_port}"
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        jwks_url=f"{base}/api/auth/jwks.json",
        jwks_cache_seconds=60,
        wechat_base_url=f"{base}/mock-wechat",
        wechat_appid="wx-lvbao-test",
        wechat_secret="test-wechat-secret",
        operator_key_secret="test-operator-master-key",
        log_level="WARNING",
        testing=True,
    )


@pytest.fixture(scope="session")
def databases(settings):
    """Each service's database, migrated from scratch once per run."""
    dbs = {name: registry.database(name, settings) for name in registry.SERVICES}
    for name, db in dbs.items():
        if not db.is_sqlite:
            with db.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE'))
        upgrade(name, db)
    yield dbs
    for db in dbs.values():
        db.dispose()


def _truncate(dbs) -> None:
    for db in dbs.values():
        with db.engine.begin() as conn:
            tables = [t for t in reversed(_tables(db)) if t.name not in KEEP_TABLES]
            if db.is_sqlite:
                for table in tables:
                    conn.execute(table.delete())
            elif tables:
                names = ", ".join(f'"{db.schema}"."{t.name}"' for t in tables)
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _tables(db):
    # Each service's schema is named after it.
    return registry.module(db.schema, "models").Base.metadata.sorted_tables


@pytest.fixture
def clean(databases, redis_client):
    """Empty tables and Redis before the test (with the province default rules in place); an unfrozen clock
    after it."""
    from services.activities.limits import limits_cache
    from services.points.rules import install_default_rules

    _truncate(databases)
    limits_cache.invalidate()  # the activities processes' copy of rule limits
    install_default_rules(databases["points"])
    yield databases
    clock.set_time(None)


@pytest.fixture(scope="session")
def combined_app(settings, databases):
    """Every service and the mock WeChat under their public prefixes (``combined_app.mounts``)."""
    app = create_combined_app(settings)
    yield app
    for mounted in app.mounts.values():
        parts = parts_of(mounted)
        if parts is not None:
            parts.close()


@pytest.fixture(scope="session")
def live_server(combined_app, server_port):
    """The whole system served on a loopback port, as `make run` does."""
    server = make_server("127.0.0.1", server_port, combined_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server_port}"
    server.shutdown()
    thread.join(timeout=5)


class Api:
    """A thin HTTP client for the live system: ``api.post("/api/auth/...", json=..., token=...)``."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {}) or {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@dataclass
class Pilot:
    """A seeded institution with departments and a roster, and ways to sign in as its people."""

    api: Api
    institution_id: int
    departments: dict[str, int]

    def wechat_login(self, openid: str, nickname: str | None = None) -> dict[str, Any]:
        code = self.api.post("/mock-wechat/mock/login", json={"openid": openid, "nickname": nickname}).json()["code"]
        response = self.api.post("/api/auth/wechat/login", json={"code": code})
        assert response.status_code == 200, response.text
        return response.json()

    def bind_by_phone(self, token: str, phone: str) -> requests.Response:
        phone_code = self.api.post("/mock-wechat/mock/phone-code", json={"phone": phone}).json()["code"]
        return self.api.post("/api/auth/bind", json={"phone_code": phone_code}, token=token)

    def employee(self, openid: str, phone: str) -> dict[str, Any]:
        """A bound employee's fresh token pair (bound claims need the refresh after binding)."""
        pair = self.wechat_login(openid)
        bound = self.bind_by_phone(pair["access_token"], phone)
        assert bound.status_code == 200, bound.text
        refreshed = self.api.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        return refreshed.json()

    def admin_login(self, username: str, password: str) -> dict[str, Any]:
        response = self.api.post("/api/auth/admin/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()


PROVINCE_PASSWORD = "province-admin-pw-1"


@pytest.fixture
def api(live_server, clean):
    return Api(live_server)


@pytest.fixture
def pilot(api, settings, databases, redis_client) -> Pilot:
    """The demo pilot (as `make run` seeds it) with a province admin `admin`."""
    from lvbao.seed import DEMO_DEPARTMENTS, seed_demo

    result = seed_demo(settings, databases["gateway"], redis_client, PROVINCE_PASSWORD)
    with databases["gateway"].engine.connect() as conn:
        rows = conn.execute(
            text("SELECT code, id FROM gateway.departments WHERE institution_id = :i"),
            {"i": result["institution_id"]},
        ).all()
    departments = dict(rows)
    assert set(departments) == {code for _, code in DEMO_DEPARTMENTS}
    return Pilot(api, result["institution_id"], departments)


@pytest.fixture
def province_token(pilot) -> str:
    return pilot.admin_login("admin", PROVINCE_PASSWORD)["access_token"]


@pytest.fixture
def rotates_keys(combined_app, databases):
    """For tests that change the signing keys: afterwards a key signs at the real time again (a test may have
    rotated under a clock frozen in the future), and every verifier refetches the JWKS, as it would once its
    cache expired (in production a rotated key is published ahead of use; see `lvbao keys rotate --lead`)."""
    from services.gateway.keys import KeyRing
    from shared.errors import ApiError

    yield
    clock.set_time(None)
    ring = KeyRing(databases["gateway"])
    try:
        ring.signing_key()
    except ApiError:
        ring.rotate(lead_seconds=0)
    for mounted in combined_app.mounts.values():
        ctx = parts_of(mounted)
        if ctx is not None and hasattr(ctx.verifier.keys, "invalidate"):
            ctx.verifier.keys.invalidate()
