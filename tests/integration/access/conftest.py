"""Fixtures for identity tests: a fresh database of each kind with the store, identity and
notification tables, an AuthContext with a fake protector and a hand-moved clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Table, func, select
from tests.unit.access.fakes import FAST_POLICY, FakeClock, FakeFieldProtector

from carenet.access.accounts import AuthContext
from carenet.access.schema import ACCESS_TABLES
from carenet.adapters.notify import NOTIFY_TABLES, OutboxNotifier
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store import schema as store_schema
from carenet.store.engine import build_engine
from carenet.store.protection import ResourceProtection
from carenet.store.repository import Repository
from carenet.store.uow import Store

T = TypeVar("T")

TABLES: list[Table] = [
    store_schema.resources,
    store_schema.resource_history,
    *store_schema.INDEX_TABLES.values(),
    store_schema.search_snapshots,
    store_schema.search_snapshot_meta,
    *ACCESS_TABLES,
    *NOTIFY_TABLES,
]


@dataclass
class Env:
    store: Store
    ctx: AuthContext
    clock: FakeClock
    protector: FakeFieldProtector

    def run(self, fn: Callable[[Connection, Repository], T]) -> T:
        """Run ``fn`` in one unit of work, committing unless it raises."""
        with self.store.unit_of_work() as uow:
            result = fn(uow.repo.conn, uow.repo)
            uow.commit()
            return result

    def refused(self, fn: Callable[[Connection, Repository], Any]) -> OperationOutcomeError:
        """Run ``fn`` expecting a refusal; returns it (the unit of work rolls back)."""
        with pytest.raises(OperationOutcomeError) as info:
            self.run(fn)
        return info.value

    def counts(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in TABLES
                if not t.name.startswith("search_snapshot")
            }

    def with_policy(self, **changes: Any) -> AuthContext:
        from dataclasses import replace

        return replace(self.ctx, policy=replace(self.ctx.policy, **changes))


def codes(err: OperationOutcomeError | None) -> list[str | None]:
    assert err is not None, "expected a refusal"
    return [i.details_code for i in err.issues]


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    engine = build_engine(db_url)
    store_schema.metadata.create_all(engine, tables=TABLES)
    clock = FakeClock()
    protector = FakeFieldProtector()
    ctx = AuthContext(
        protector=protector,
        policy=FAST_POLICY,
        clock=clock,
        notifier=OutboxNotifier(protector, clock=clock),
    )
    store = Store(
        engine,
        source="urn:carenet:node:test",
        tz="Asia/Shanghai",
        protection=ResourceProtection(protector),
    )
    try:
        yield Env(store, ctx, clock, protector)
    finally:
        engine.dispose()
