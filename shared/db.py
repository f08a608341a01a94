"""Database plumbing: one engine per service, its own schema, and the unit of work.

Every service keeps its tables in its own schema (``gateway``, ``points``, ...). On PostgreSQL that is a real
schema; on SQLite (the embedded default) each schema is a separate database file ATTACHed under the schema's
name, so the same models and migrations run on both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from sqlalchemy import DateTime, MetaData, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.types import TypeDecorator

from shared.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Execution option marking a read-only unit of work (SQLite then skips the write lock).
READ_ONLY = "lvbao_read_only"


def make_base(schema: str) -> type[DeclarativeBase]:
    """A declarative base whose tables all live in ``schema``."""

    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)

    Base.__name__ = f"{schema.title()}Base"
    return Base


class UtcDateTime(TypeDecorator):
    """A timestamp stored with its zone and always read back as aware UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use shared.clock")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value) if value is not None else None


def sqlite_schema_path(database_url: str, schema: str) -> str:
    """The file that holds ``schema``, named after the configured one (``var/lvbao.db`` -> ``var/lvbao.points.db``)."""
    database = make_url(database_url).database
    if not database or database == ":memory:":
        return ":memory:"
    path = Path(database)
    return str(path.with_name(f"{path.stem}.{schema}{path.suffix or '.db'}"))


def create_service_engine(database_url: str, schema: str, **kwargs: Any) -> Engine:
    """An engine for one service; on SQLite the service's schema file is attached on every connection."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
        return create_engine(url, **kwargs)

    memory = not url.database or url.database == ":memory:"
    attached = sqlite_schema_path(database_url, schema)
    if memory:
        kwargs.setdefault("poolclass", StaticPool)
    else:
        # The main database of each connection is a private in-memory one; the service's file is attached
        # as its schema. Services therefore never share a SQLite lock, as they share no PostgreSQL schema.
        Path(attached).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("poolclass", QueuePool)
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
    engine = create_engine("sqlite://", **kwargs)

    @event.listens_for(engine, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below decide where transactions start (pysqlite's own handling
        # would start them late and break SAVEPOINT and transactional DDL).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("ATTACH DATABASE ? AS " + _quote_ident(schema), (attached,))
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if not memory:
            cursor.execute(f"PRAGMA {_quote_ident(schema)}.journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # readers share the file (WAL) and never upgrade to writing
        else:
            # Take the write lock up front: deferred transactions that later write deadlock each other.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _quote_ident(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"bad schema name {name!r}")
    return f'"{name}"'


def insert_for(session: Session) -> Callable[..., Any]:
    """The dialect's ``insert`` (PostgreSQL or SQLite), which has ``on_conflict_do_nothing``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def advisory_xact_lock(session: Session, namespace: int, key: int) -> None:
    """Serialise work on one thing (a user, say) for the rest of the transaction: a transaction-scoped advisory
    lock on PostgreSQL; on SQLite writers are serialised already by ``BEGIN IMMEDIATE``. Callers keep a
    database constraint as the last guard either way."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": namespace, "key": key})


class UnitOfWork:
    """One business transaction: ``with db.uow() as uow: ...; uow.commit()``. Rolls back unless committed.

    Callbacks registered with :meth:`after_commit` run once the commit has succeeded (enqueue-after-commit).
    """

    def __init__(self, session_factory: sessionmaker[Session], read_only: bool = False):
        self._session_factory = session_factory
        self._after_commit: list[Callable[[], None]] = []
        self.read_only = read_only
        self.session: Session

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self._after_commit = []
        if self.read_only:
            self.session.connection(execution_options={READ_ONLY: True})
        return self

    def __exit__(self, *exc: object) -> None:
        # close() rolls back whatever was not committed and detaches the objects with their loaded values
        # (rollback() would expire them, and use cases return views of them after the block).
        self.session.close()

    def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        self.session.commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def rollback(self) -> None:
        self.session.rollback()
        self._after_commit = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)


class Database:
    """A service's engine and session factory."""

    def __init__(self, database_url: str, schema: str, **engine_kwargs: Any):
        self.url = database_url
        self.schema = schema
        self.engine = create_service_engine(database_url, schema, **engine_kwargs)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def reader(self) -> UnitOfWork:
        """A unit of work that only reads (on SQLite it takes no write lock)."""
        return UnitOfWork(self.session_factory, read_only=True)

    def ping(self) -> None:
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
