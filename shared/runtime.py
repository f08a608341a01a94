"""A service's database and Redis outside a web request: for RQ jobs, the relay and the CLI."""

from __future__ import annotations

import threading

import redis

from shared.config import Settings
from shared.db import Database
from shared.service_app import make_redis


class ServiceRuntime:
    """Lazily built, once per process (RQ's SimpleWorker runs every job in the same process)."""

    def __init__(self, schema: str):
        self.schema = schema
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._redis: redis.Redis | None = None
        self.settings: Settings | None = None

    def configure(self, settings: Settings, db: Database | None = None) -> None:
        with self._lock:
            self.settings = settings
            self._db = db
            self._redis = None

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings.from_env()
        return self.settings

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                self._db = Database(self._settings().database_url, self.schema)
            return self._db

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = make_redis(self._settings())
            return self._redis
