"""The notification outbox: written in the caller's transaction, delivered by the relay."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, select

from carenet.adapters.notify import (
    OutboxNotifier,
    SandboxProvider,
    notify_outbox,
    relay_outbox,
    sandbox_messages,
)

from .conftest import Env


def test_a_rolled_back_transaction_sends_nothing(env: Env) -> None:
    notifier = OutboxNotifier(env.protector, clock=env.clock)
    with env.store.unit_of_work() as uow:
        notifier.send(
            uow.repo.conn, "sms", "13800000000", "login-code", {"code": "1", "minutes": 5}
        )
    assert env.counts()["notify_outbox"] == 0


def test_relay_delivers_each_message_once(env: Env) -> None:
    notifier = OutboxNotifier(env.protector, clock=env.clock)
    ids = env.run(
        lambda c, r: [
            notifier.send(c, "sms", to, "login-code", {"code": "123456", "minutes": 5})
            for to in ("13800000001", "13800000002")
        ]
    )
    provider = SandboxProvider(clock=env.clock)
    relay = lambda c, r: relay_outbox(c, {"sms": provider}, env.protector)  # noqa: E731
    assert env.run(relay) == 2
    assert env.run(relay) == 0
    with env.store.engine.connect() as conn:
        messages = sandbox_messages(conn, to="13800000002")
    assert [m.outbox_id for m in messages] == [ids[1]]
    assert messages[0].body == "【CareNet】您的登录验证码为123456，5分钟内有效，请勿泄露给他人。"


def test_provider_failures_are_retried_then_marked_failed(env: Env) -> None:
    class Broken:
        def deliver(self, conn: Connection, *args: Any) -> str:
            raise ConnectionError("gateway down")

    notifier = OutboxNotifier(env.protector, clock=env.clock)
    env.run(
        lambda c, r: notifier.send(
            c, "sms", "13800000003", "login-code", {"code": "1", "minutes": 5}
        )
    )
    for _ in range(2):
        assert (
            env.run(lambda c, r: relay_outbox(c, {"sms": Broken()}, env.protector, max_attempts=2))
            == 0
        )
    with env.store.engine.connect() as conn:
        row = conn.execute(select(notify_outbox)).one()
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error == "ConnectionError"


def test_unknown_channel_or_template_is_a_programming_error(env: Env) -> None:
    notifier = OutboxNotifier(env.protector)
    with pytest.raises(ValueError):
        env.run(lambda c, r: notifier.send(c, "fax", "1", "login-code", {}))
    with pytest.raises(ValueError):
        env.run(lambda c, r: notifier.send(c, "sms", "1", "nope", {}))
