"""A service's composition root: every part of one service built from its settings, in one typed place.

Each service subclasses :class:`ServiceParts` in ``services/<name>/parts.py``: its use cases are attributes, and
it names its event handlers, its after-batch step and its periodic chores. The app factory, the RQ job entry
points (through :class:`LazyParts`), the relay and the embedded run all build or take that one object; nothing
else wires a service.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import redis

from shared.auth.tokens import JwksKeySource, KeySource, TokenVerifier
from shared.config import Settings
from shared.db import Database, UnitOfWork
from shared.housekeeping import prune
from shared.infra_models import InfraModels

Handler = Callable[[UnitOfWork, Any], None]
AfterBatch = Callable[[Database, redis.Redis], Any]


@dataclass(frozen=True)
class Chore:
    """Periodic work the relay process runs for a service: ``run()`` every ``interval`` seconds."""

    interval: float
    run: Callable[[], Any]
    name: str


def make_redis(settings: Settings) -> redis.Redis:
    if not settings.redis_url:
        raise RuntimeError("LVBAO_REDIS_URL is not set (make run starts an embedded Redis and sets it)")
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


class ServiceParts:
    """The database, Redis, token verifier and infrastructure models every service has; subclasses add their
    use cases as attributes in ``build()``, name their :attr:`handlers` and :attr:`after_batch`, and list their
    :meth:`chores`."""

    name: ClassVar[str]
    schema: ClassVar[str]
    models: InfraModels
    description: ClassVar[str] = ""
    # Event type -> handler: the service's one registry (its ``handlers.HANDLERS``).
    handlers: ClassVar[Mapping[str, Handler]] = {}
    # Run after each batch of events the service's worker consumed (points: the boards), as ``f(db, redis)``.
    after_batch: ClassVar[AfterBatch | None] = None

    def __init__(self, settings: Settings, *, db: Database | None = None, redis_client: redis.Redis | None = None,
                 key_source: KeySource | None = None):
        self.settings = settings
        self.db = db or Database(settings.database_url, self.schema)
        self.redis = redis_client or make_redis(settings)
        self.verifier = TokenVerifier(key_source or self.default_key_source(), issuer=settings.jwt_issuer,
                                      audience=settings.jwt_audience)
        self.build()

    def default_key_source(self) -> KeySource:
        """Where the verifier finds the signing keys: the gateway's JWKS over HTTP (the gateway reads its own)."""
        return JwksKeySource(self.settings.jwks_url, cache_seconds=self.settings.jwks_cache_seconds)

    def build(self) -> None:
        """Make the service's use cases (attributes of the subclass)."""

    def chores(self) -> list[Chore]:
        """The service's own periodic work; the relay adds outbox redelivery and pruning for every service."""
        return []

    def relay_chores(self, relay: Any) -> list[Chore]:
        """Everything the relay process runs periodically for this service: its own chores, redelivery of
        unacknowledged events and pruning of old infrastructure rows."""
        return [
            *self.chores(),
            Chore(60.0, relay.redeliver_unacknowledged, f"{self.name}.redeliver"),
            Chore(3600.0, functools.partial(prune, self.db, self.models), f"{self.name}.prune"),
        ]

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()


P = TypeVar("P", bound=ServiceParts)


class LazyParts(Generic[P]):
    """One service's parts for a worker process, built from the environment at first use (RQ's SimpleWorker
    runs every job in the same process); tests and the embedded run hand it the parts they built."""

    def __init__(self, factory: Callable[[Settings], P]):
        self._factory = factory
        self._lock = threading.Lock()
        self._parts: P | None = None

    def use(self, parts: P | None) -> None:
        with self._lock:
            self._parts = parts

    def get(self) -> P:
        with self._lock:
            if self._parts is None:
                self._parts = self._factory(Settings.from_env())
            return self._parts


def events_job(service: str, lazy: LazyParts[Any]) -> Callable[[list[dict[str, Any]]], dict[str, int]]:
    """The ``handle_events`` RQ job of a service: its queue's one entry point (see shared.outbox.handler_path)."""
    from shared.consumer import consume

    def handle_events(messages: list[dict[str, Any]]) -> dict[str, int]:
        parts = lazy.get()
        return consume(parts.name, parts.db, parts.models, parts.handlers, messages, parts.redis,
                       parts.after_batch)

    handle_events.__qualname__ = handle_events.__name__ = "handle_events"
    handle_events.__module__ = f"services.{service}.tasks"
    return handle_events
