"""Composition root: builds the store and the application from Settings."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from carenet.config import Settings, get_settings
from carenet.store.engine import build_engine
from carenet.store.uow import Store


def build_store(settings: Settings) -> Store:
    engine = build_engine(settings.database_url)
    return Store(
        engine,
        source=settings.node_source,
        tz=settings.timezone,
        default_count=settings.search_default_count,
        max_count=settings.search_max_count,
    )


def build_app(settings: Settings | None = None) -> FastAPI:
    from carenet.api.app import create_app

    settings = settings or get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return create_app(settings, build_store(settings))
