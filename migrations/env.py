"""Alembic environment: migrates the database named by Settings (or by the caller's config)."""

from __future__ import annotations

from alembic import context

import carenet.access.oauth_schema  # noqa: F401

# Every module that defines tables on the shared metadata, so autogenerate sees them all.
import carenet.access.schema  # noqa: F401
import carenet.adapters.notify.schema  # noqa: F401
import carenet.audit.schema  # noqa: F401
import carenet.crypto.keystore  # noqa: F401
from carenet.store.engine import build_engine
from carenet.store.schema import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from carenet.config import get_settings

        url = get_settings().database_url
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = build_engine(_url())
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
