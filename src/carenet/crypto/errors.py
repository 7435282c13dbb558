"""The one error type of ``carenet.crypto``: a stable code plus a message that names no secret.

Crypto failures are server-side faults (a tampered row, a wrong master secret, a bug), not bad
client input, so this is not an ``OperationOutcomeError``: the API's catch-all turns it into a
500 with an opaque id and the code goes to the log (STYLE.md, "Errors").
"""

from __future__ import annotations


class CryptoError(Exception):
    """A key, token or signature could not be used; ``code`` is stable (``CRYPTO-TOKEN-INVALID``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
