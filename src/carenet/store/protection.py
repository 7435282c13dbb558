"""Transparent protection of resident ID numbers and phone numbers inside stored resources
(PRIV-1, 个人信息保护法 Art 28; SIG-2: SM4 and SM3): sealed in ``resources``/``resource_history``,
blind-indexed in ``idx_token``, plaintext to everything above the store.

``ResourceProtection`` wraps a ``FieldCipher`` (the node's ``CryptoFieldProtector``, built in
``bootstrap.build_store``). The store calls it when it writes content and index rows, when it
reads content back, and when a token search needs the blind index of a value. docs/crypto.md
explains the stored form and why.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

import orjson

from carenet.crypto.errors import CryptoError
from carenet.fhir.outcomes import Issue, OperationOutcomeError
from carenet.fhir.sensitive import (
    kind_of,
    kind_of_system,
    may_hold_sensitive,
    sensitive_elements,
)

log = logging.getLogger(__name__)

#: Stored form of a sensitive value: this prefix, then the SM4-GCM token (base64url, which
#: carries its version and the master secret's fingerprint). The kind (resident ID or phone) is
#: authenticated with it, so a token moved to another kind of element does not open.
SEALED_PREFIX = "sm4gcm:"
# The search query a paging snapshot keeps is sealed as one opaque field of this name.
_QUERY_FIELD = "search_snapshot_query"


class FieldCipher(Protocol):
    """What the store needs of the field protector (``access.ports.FieldProtector`` has it)."""

    def encrypt(self, plaintext: str, *, field: str) -> str: ...

    def decrypt(self, ciphertext: str, *, field: str) -> str: ...

    def blind_index(self, value: str, *, field: str) -> str: ...


class ResourceProtection:
    """Seals sensitive values on the way into the database and opens them on the way out."""

    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def __repr__(self) -> str:
        return f"ResourceProtection({self._cipher!r})"

    # ------------------------------------------------------------------ resource content

    def seal(self, compact_json: str) -> str:
        """The stored form of a resource's compact JSON: every sensitive value replaced by
        ``SEALED_PREFIX`` + token. Values are sealed whatever they look like, so a client's value
        that happens to start with the prefix comes back unchanged too."""
        if not may_hold_sensitive(compact_json):
            return compact_json
        doc = orjson.loads(compact_json)
        for holder, kind, _path in list(sensitive_elements(doc)):
            holder["value"] = SEALED_PREFIX + self._cipher.encrypt(holder["value"], field=kind)
        return orjson.dumps(doc).decode()

    def reveal(self, content: str | bytes) -> dict[str, Any]:
        """The resource as the client wrote it. A value that does not open (altered in the
        database, or sealed under another master secret) is a server fault: a 500 with an
        opaque incident id; the log names the resource, the element and the crypto code."""
        doc: dict[str, Any] = orjson.loads(content)
        sealed = (
            SEALED_PREFIX in content
            if isinstance(content, str)
            else SEALED_PREFIX.encode() in content
        )
        if not sealed:
            return doc
        for holder, kind, path in list(sensitive_elements(doc)):
            value = holder["value"]
            if not value.startswith(SEALED_PREFIX):
                continue  # written before protection was switched on
            try:
                holder["value"] = self._cipher.decrypt(value[len(SEALED_PREFIX) :], field=kind)
            except (CryptoError, ValueError) as exc:
                raise _undecryptable(doc, path, exc) from None
        return doc

    def has_plaintext(self, content: str | bytes) -> bool:
        """Whether a stored content still holds a sensitive value in clear (written before
        protection was switched on)."""
        text = content if isinstance(content, str) else content.decode()
        if not may_hold_sensitive(text):
            return False
        doc = orjson.loads(text)
        return any(
            not holder["value"].startswith(SEALED_PREFIX)
            for holder, _kind, _path in sensitive_elements(doc)
        )

    # ------------------------------------------------------------------ search indexes

    def index_code(self, element: dict[str, Any]) -> str | None:
        """The blind index that replaces the value of a sensitive Identifier or ContactPoint in
        ``idx_token``; None for any other element (indexed as it is)."""
        kind = kind_of(element)
        if kind is None:
            return None
        return self._cipher.blind_index(element["value"], field=kind)

    def search_codes(self, system: str | None, code: str, kinds: frozenset[str]) -> list[str]:
        """Blind indexes a token search for ``system|code`` (system None: any system; then
        ``kinds`` says what the parameter may hold) must also match. The plain code stays an
        alternative: other systems' values, and rows written before protection."""
        wanted: list[str]
        if system is not None:
            kind = kind_of_system(system)
            wanted = [kind] if kind is not None else []
        else:
            wanted = sorted(kinds)
        return [
            self._cipher.blind_index(code, field=kind)
            for kind in wanted
            # Phone numbers compare by their digits: a value without any matches no phone.
            if kind != "phone" or any(c.isdigit() for c in code)
        ]

    # ------------------------------------------------------------------ paging snapshots

    def seal_text(self, text: str) -> str:
        """A snapshot's stored search query (it may name a resident ID or a phone number)."""
        return SEALED_PREFIX + self._cipher.encrypt(text, field=_QUERY_FIELD)

    def open_text(self, stored: str) -> str | None:
        """The query :meth:`seal_text` stored; plain JSON from before protection as it is;
        None when it does not open (the caller treats the snapshot as expired)."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            return self._cipher.decrypt(stored[len(SEALED_PREFIX) :], field=_QUERY_FIELD)
        except (CryptoError, ValueError):
            return None


def _undecryptable(doc: dict[str, Any], path: str, exc: Exception) -> OperationOutcomeError:
    incident = uuid.uuid4().hex
    version = (doc.get("meta") or {}).get("versionId")
    log.error(
        "stored sensitive value cannot be decrypted: incident=%s resource=%s/%s version=%s "
        "element=%s code=%s",
        incident,
        doc.get("resourceType"),
        doc.get("id"),
        version,
        path,
        getattr(exc, "code", type(exc).__name__),
        extra={"incident": incident},
    )
    return OperationOutcomeError(
        500, [Issue("fatal", "exception", f"Internal error; incident {incident}")]
    )
