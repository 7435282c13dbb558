"""Composition root: builds the store and the application from Settings."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

from carenet.config import Settings, get_settings
from carenet.store.engine import build_engine
from carenet.store.protection import ResourceProtection
from carenet.store.uow import Store

if TYPE_CHECKING:
    from carenet.access.accounts import AuthContext


def build_store(settings: Settings) -> Store:
    """The node's store; resident IDs and phone numbers in resources are sealed under keys
    derived from the master secret (PRIV-1, docs/crypto.md)."""
    engine = build_engine(settings.database_url)
    return Store(
        engine,
        source=settings.node_source,
        tz=settings.timezone,
        protection=build_protection(settings),
        default_count=settings.search_default_count,
        max_count=settings.search_max_count,
    )


def build_protection(settings: Settings) -> ResourceProtection:
    """Field protection of stored resources: the same SM4-GCM tokens and HMAC-SM3 blind indexes
    as the identity tables (``resident_index`` and a Patient's ``identifier`` index agree)."""
    from carenet.access.protector import CryptoFieldProtector

    return ResourceProtection(CryptoFieldProtector.from_secret(settings.master_secret))


def build_auth_context(settings: Settings) -> AuthContext:
    """The identity services' context: real field protection from the master secret, the
    notification outbox, and the GB/T 2260 divisions this node knows."""
    from carenet.access.accounts import AuthContext
    from carenet.access.policy import AuthPolicy
    from carenet.access.protector import CryptoFieldProtector
    from carenet.adapters.notify import OutboxNotifier
    from carenet.crypto.keys import MasterKey
    from carenet.fhir.regions import is_known_division

    master = MasterKey.from_secret(settings.master_secret)
    protector = CryptoFieldProtector(master)
    return AuthContext(
        master=master,
        protector=protector,
        policy=AuthPolicy(timezone=settings.timezone),
        notifier=OutboxNotifier(protector),
        known_region=is_known_division,
    )


def build_app(settings: Settings | None = None) -> FastAPI:
    from carenet.api.app import create_app

    settings = settings or get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = create_app(settings, build_store(settings))
    # Everything built so far (FHIR definitions, SQLAlchemy metadata, routes) lives as long as
    # the process: move it out of the cyclic garbage collector's reach. Otherwise collections
    # keep traversing it, about a tenth of the CPU of a write-heavy request. Objects created
    # later are collected as usual.
    gc.collect()
    gc.freeze()
    return app
