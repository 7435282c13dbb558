"""What identity services need from outside: field protection (encryption at rest, keyed blind
indexes, masking) and a clock. The real FieldProtector lives in ``carenet.crypto.fields``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

#: Milliseconds since the Unix epoch, UTC — the same unit the store uses for every instant.
Clock = Callable[[], int]


def now_ms() -> int:
    return int(time.time() * 1000)


def local_date(ms: int, tz: str = "Asia/Shanghai") -> date:
    """The calendar day an instant falls on where the node is (ages are counted in days there)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(tz)).date()


class FieldProtector(Protocol):
    """Encrypts one kind of sensitive field at rest and computes its blind index.

    ``field`` names the kind of value (``"phone"``, ``"resident_id"``, ``"totp_secret"``,
    ``"otp_code"``): implementations derive a separate key per field, so a blind index of a phone
    number can never be compared with one of a resident ID.
    """

    def encrypt(self, plaintext: str, *, field: str) -> str:
        """Ciphertext (text-safe, e.g. base64) that only :meth:`decrypt` can reverse."""
        ...

    def decrypt(self, ciphertext: str, *, field: str) -> str: ...

    def blind_index(self, value: str, *, field: str) -> str:
        """A keyed, deterministic hash (e.g. HMAC-SM3, hex) for exact-match lookups."""
        ...

    def mask(self, value: str, *, field: str) -> str:
        """The value for lists and logs: ``138****5678``, ``1101**********002X``."""
        ...
