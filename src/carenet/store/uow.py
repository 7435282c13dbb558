"""Unit of work: one user action, one database transaction (DESIGN.md principle 2)."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from carenet.store.engine import WROTE, track_writes
from carenet.store.protection import ResourceProtection
from carenet.store.repository import Repository


class UnitOfWork:
    """``with UnitOfWork(store) as uow: ...; uow.commit()`` — rolls back unless committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Connection | None = None
        self.repo: Repository

    def __enter__(self) -> UnitOfWork:
        self._conn = self.store.engine.connect()
        self._conn.begin()
        self._conn.info[WROTE] = False
        self.repo = self.store.repository(self._conn)
        return self

    def changed(self) -> bool:
        """Whether this transaction has written anything so far: a statement other than a read
        was sent, or rows wait in the repository's buffer. False means committing it now
        stores nothing but what is added from here on (a refusal's audit event)."""
        assert self._conn is not None
        return bool(self._conn.info.get(WROTE, True)) or self.repo.has_buffered()

    def commit(self) -> None:
        assert self._conn is not None
        self.repo.flush()
        self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.rollback()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Store:
    """The database behind a node: engine plus the settings its repositories need.

    ``protection`` has no default on purpose: whoever builds a Store decides whether resident
    IDs and phone numbers are sealed at rest (``bootstrap.build_store`` always does; None stores
    them in clear, for tests that are about something else)."""

    def __init__(
        self,
        engine: Engine,
        *,
        source: str,
        tz: str,
        protection: ResourceProtection | None,
        default_count: int = 20,
        max_count: int = 1000,
    ) -> None:
        self.engine = track_writes(engine)
        self.protection = protection
        self.source = source
        self.tz = tz
        self.default_count = default_count
        self.max_count = max_count

    def repository(self, conn: Connection) -> Repository:
        return Repository(
            conn,
            source=self.source,
            tz=self.tz,
            default_count=self.default_count,
            max_count=self.max_count,
            protection=self.protection,
        )

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)
