"""Notifications (SMS): the ``Notifier`` interface writing to the outbox in the caller's
transaction, the relay that delivers the outbox, and the sandbox provider for tests and demo."""

from carenet.adapters.notify.outbox import (
    CHANNELS,
    Notifier,
    OutboxNotifier,
    Provider,
    Sealer,
    relay_outbox,
)
from carenet.adapters.notify.sandbox import SandboxMessage, SandboxProvider, sandbox_messages
from carenet.adapters.notify.schema import NOTIFY_TABLES, notify_outbox, notify_sandbox_messages

__all__ = [
    "CHANNELS",
    "NOTIFY_TABLES",
    "Notifier",
    "OutboxNotifier",
    "Provider",
    "SandboxMessage",
    "SandboxProvider",
    "Sealer",
    "notify_outbox",
    "notify_sandbox_messages",
    "relay_outbox",
    "sandbox_messages",
]
