"""Alembic, per service: each service's migrations live in ``services/<name>/migrations`` and manage only
that service's schema (its own ``alembic_version`` table inside it)."""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from shared.db import Database, UtcDateTime

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["database"] = db
    return cfg


def upgrade(service: str, db: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, db), revision)


def revision(service: str, db: Database, message: str) -> None:
    command.revision(alembic_config(service, db), message=message, autogenerate=True)


def _render_item(type_: str, obj: object, _autogen_context: object) -> str | bool:
    """Migrations name plain SQLAlchemy types, so they never import the application."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_env(metadata: MetaData) -> None:
    """Body of each service's ``env.py``: migrate the service's schema on the service's own engine."""
    db: Database = context.config.attributes["database"]
    schema = metadata.schema
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # One migrator at a time per schema, however many containers start together.
            connection.exec_driver_sql(f"SELECT pg_advisory_lock(hashtext('lvbao-migrate-{schema}'))")
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=True,
                include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
                render_item=_render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock(hashtext('lvbao-migrate-{schema}'))")
                connection.commit()
