"""The sandbox provider: "delivers" messages into a table that tests and the demo read, standing
in for handsets. Configure it only in development, test and demo."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select

from carenet.adapters.notify.outbox import Clock
from carenet.adapters.notify.schema import notify_sandbox_messages
from carenet.adapters.notify.templates import render


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class SandboxMessage:
    id: str
    outbox_id: str
    channel: str
    to: str
    template: str
    params: dict[str, Any]
    body: str
    delivered_at: int


class SandboxProvider:
    """A Provider that stores each message in ``notify_sandbox_messages``."""

    def __init__(self, *, clock: Clock = _now_ms) -> None:
        self.clock = clock

    def deliver(
        self,
        conn: Connection,
        message_id: str,
        channel: str,
        to: str,
        template: str,
        params: dict[str, Any],
    ) -> str:
        sandbox_id = f"sandbox-{uuid.uuid4()}"
        conn.execute(
            insert(notify_sandbox_messages).values(
                id=sandbox_id,
                outbox_id=message_id,
                channel=channel,
                recipient=to,
                template=template,
                params=orjson.dumps(params).decode(),
                body=render(template, params),
                delivered_at=self.clock(),
            )
        )
        return sandbox_id


def sandbox_messages(
    conn: Connection, *, to: str | None = None, template: str | None = None
) -> list[SandboxMessage]:
    """Delivered sandbox messages, newest first, optionally for one recipient and template."""
    q = select(notify_sandbox_messages)
    if to is not None:
        q = q.where(notify_sandbox_messages.c.recipient == to)
    if template is not None:
        q = q.where(notify_sandbox_messages.c.template == template)
    q = q.order_by(notify_sandbox_messages.c.delivered_at.desc(), notify_sandbox_messages.c.id)
    return [
        SandboxMessage(
            r.id,
            r.outbox_id,
            r.channel,
            r.recipient,
            r.template,
            orjson.loads(r.params),
            r.body,
            r.delivered_at,
        )
        for r in conn.execute(q).all()
    ]
