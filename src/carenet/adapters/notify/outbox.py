"""The Notifier interface and its outbox implementation, and the relay that delivers the outbox
through a provider after the writing transaction has committed."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, bindparam, insert, select, update

from carenet.adapters.notify.schema import notify_outbox
from carenet.adapters.notify.templates import TEMPLATES
from carenet.store.direct import Prebuilt

log = logging.getLogger(__name__)

Clock = Callable[[], int]  # ms since the epoch, UTC


def _now_ms() -> int:
    return int(time.time() * 1000)


class Sealer(Protocol):
    """The part of a FieldProtector the outbox needs (structurally the same object)."""

    def encrypt(self, plaintext: str, *, field: str) -> str: ...

    def decrypt(self, ciphertext: str, *, field: str) -> str: ...

    def blind_index(self, value: str, *, field: str) -> str: ...


class RowBuffer(Protocol):
    """Holds rows for a table until the transaction's next flush (store.Repository)."""

    def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None: ...


class Notifier(Protocol):
    """Sends a message as part of the caller's transaction: it is delivered only if that
    transaction commits (nothing is sent for work that rolled back)."""

    def send(
        self,
        conn: Connection,
        channel: str,
        to: str,
        template: str,
        params: dict[str, Any],
        *,
        buffer: RowBuffer | None = None,
    ) -> str:
        """Queue a message; returns its message id. With ``buffer`` (the transaction's
        repository) the row goes with the repository's next flush instead of a statement of
        its own: one round trip fewer for a request that writes resources anyway."""
        ...


class Provider(Protocol):
    """A delivery channel (SMS gateway, sandbox). Returns the provider's message id."""

    def deliver(
        self,
        conn: Connection,
        message_id: str,
        channel: str,
        to: str,
        template: str,
        params: dict[str, Any],
    ) -> str: ...


CHANNELS = frozenset({"sms"})
# Built once: a statement built per message is compiled, or at least cache-keyed, per message
# (every booking queues one at release time).
_QUEUED = (
    "id",
    "channel",
    "to_index",
    "to_enc",
    "template",
    "params_enc",
    "status",
    "attempts",
    "created",
)
_QUEUE = Prebuilt(insert(notify_outbox).values({c: bindparam(c) for c in _QUEUED}))


class OutboxNotifier:
    """Writes messages to ``notify_outbox`` on the caller's connection."""

    def __init__(self, sealer: Sealer, *, clock: Clock = _now_ms) -> None:
        self.sealer = sealer
        self.clock = clock

    def send(
        self,
        conn: Connection,
        channel: str,
        to: str,
        template: str,
        params: dict[str, Any],
        *,
        buffer: RowBuffer | None = None,
    ) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"unknown notification channel {channel!r}")
        if template not in TEMPLATES:
            raise ValueError(f"unknown notification template {template!r}")
        message_id = str(uuid.uuid4())
        row = {
            "id": message_id,
            "channel": channel,
            "to_index": self.sealer.blind_index(to, field=channel),
            "to_enc": self.sealer.encrypt(to, field=channel),
            "template": template,
            "params_enc": self.sealer.encrypt(orjson.dumps(params).decode(), field="notify"),
            "status": "pending",
            "attempts": 0,
            "created": self.clock(),
        }
        if buffer is not None:
            buffer.add_rows(notify_outbox.name, [row])
        else:
            _QUEUE.run(conn, row)
        return message_id


def relay_outbox(
    conn: Connection,
    providers: Mapping[str, Provider],
    sealer: Sealer,
    *,
    clock: Clock = _now_ms,
    limit: int = 100,
    max_attempts: int = 5,
) -> int:
    """Deliver up to ``limit`` pending messages, oldest first; returns how many were sent.

    Run it in its own transaction after the writers have committed (a background task or right
    after the request). On PostgreSQL the rows are claimed with SKIP LOCKED so several relays
    never send one message twice. A provider error is recorded on the row and retried on a later
    run, up to ``max_attempts``, then the message is marked failed.
    """
    q = (
        select(notify_outbox)
        .where(notify_outbox.c.status == "pending")
        .order_by(notify_outbox.c.created, notify_outbox.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    sent = 0
    for row in conn.execute(q).all():
        provider = providers.get(row.channel)
        if provider is None:
            continue
        to = sealer.decrypt(row.to_enc, field=row.channel)
        params = orjson.loads(sealer.decrypt(row.params_enc, field="notify"))
        try:
            with conn.begin_nested():
                provider_id = provider.deliver(conn, row.id, row.channel, to, row.template, params)
        except Exception as exc:  # noqa: BLE001 - any provider failure is retried later
            attempts = row.attempts + 1
            log.warning(
                "notification delivery failed",
                extra={"message_id": row.id, "attempts": attempts, "error": type(exc).__name__},
            )
            conn.execute(
                update(notify_outbox)
                .where(notify_outbox.c.id == row.id)
                .values(
                    attempts=attempts,
                    # Only the kind of error: its text may quote the message (a code, a phone).
                    last_error=type(exc).__name__,
                    status="failed" if attempts >= max_attempts else "pending",
                )
            )
            continue
        conn.execute(
            update(notify_outbox)
            .where(notify_outbox.c.id == row.id)
            .values(
                status="sent",
                attempts=row.attempts + 1,
                sent_at=clock(),
                provider_message_id=provider_id,
            )
        )
        sent += 1
    return sent
