"""Test doubles for identity tests: a FieldProtector, a settable clock and a fast policy."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from zoneinfo import ZoneInfo

from carenet.access.policy import AuthPolicy

#: 2026-01-15 12:00 in Asia/Shanghai, in ms since the epoch.
T0 = int(datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)

#: Cheap argon2 parameters so that tests stay fast; everything else at its default.
FAST_POLICY = AuthPolicy(argon2_time_cost=1, argon2_memory_cost_kib=1024, argon2_parallelism=1)


class FakeFieldProtector:
    """Reversible, field-bound "encryption" (clearly not clear text) and an HMAC blind index."""

    key = b"carenet-test-key"

    def encrypt(self, plaintext: str, *, field: str) -> str:
        return "enc:" + base64.b64encode(f"{field}|{plaintext}".encode()[::-1]).decode()

    def decrypt(self, ciphertext: str, *, field: str) -> str:
        assert ciphertext.startswith("enc:")
        kind, _, value = base64.b64decode(ciphertext[4:])[::-1].decode().partition("|")
        assert kind == field, f"decrypting a {kind} as a {field}"
        return value

    def blind_index(self, value: str, *, field: str) -> str:
        return hmac.new(self.key, f"{field}\0{value}".encode(), hashlib.sha256).hexdigest()

    def mask(self, value: str, *, field: str) -> str:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]


class FakeClock:
    """A clock tests move by hand instead of sleeping."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
