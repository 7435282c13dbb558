"""What one audit event says (``AuditRecord``), and the canonical bytes its hash covers.

The canonical form is RFC 8785 (JCS) JSON of the stored fields, so that anyone can recompute a
hash from the row with any JCS implementation: the fields below, with ``entities`` as a JSON
list and ``detail`` as a JSON object (or null), and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import rfc8785

from carenet.crypto.hashing import sm3

# AuditEvent.action (required binding http://hl7.org/fhir/audit-event-action).
ACTIONS = frozenset({"C", "R", "U", "D", "E"})
# AuditEvent.outcome (required binding http://hl7.org/fhir/audit-event-outcome): success, minor
# failure (a refused or invalid request, 4xx), serious failure (5xx), major failure.
OUTCOMES = frozenset({0, 4, 8, 12})
OUTCOME_SUCCESS = 0
OUTCOME_MINOR_FAILURE = 4
OUTCOME_SERIOUS_FAILURE = 8
OUTCOME_MAJOR_FAILURE = 12

# Our interaction names and the AuditEvent.action each implies unless the caller says otherwise.
# FHIR gives searches and queries "E" (execute), reads "R"; DICOM gives an export "R".
DEFAULT_ACTION: dict[str, str] = {
    "read": "R",
    "vread": "R",
    "history": "R",
    "search": "E",
    "capabilities": "R",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "operation": "E",
    "transaction": "E",
    "batch": "E",
    "login": "E",
    "login-failed": "E",
    "logout": "E",
    "export": "R",
    "break-glass": "E",
}
SUBTYPES = frozenset(DEFAULT_ACTION)

GENESIS_HASH = "0" * 64  # prev_hash of the first event of every chain

# The fields the hash covers, in the order of the table; RFC 8785 sorts them anyway.
HASHED_FIELDS = (
    "chain_id",
    "seq",
    "recorded",
    "action",
    "subtype",
    "outcome",
    "agent",
    "agent_role",
    "on_behalf_of",
    "patient",
    "entities",
    "query",
    "source_address",
    "request_id",
    "purpose",
    "detail",
)


def now_ms() -> int:
    return int(time.time() * 1000)


def _clean(value: str | None) -> str | None:
    """Text as both stores keep it: PostgreSQL refuses NUL and unpaired surrogates, and the
    canonical JSON must be exactly what a later read returns."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class AuditRecord:
    """One audited action: who (agent, role, on behalf of whom), did what (subtype, action) to
    which resources (entities) of which patient, with what outcome, from where, when.

    ``action`` defaults from ``subtype``; ``recorded`` (ms since the epoch, UTC) defaults to now.
    ``detail`` is a small JSON object for anything else (operation name, HTTP status, error code).
    """

    subtype: str
    agent: str
    outcome: int = OUTCOME_SUCCESS
    action: str = ""
    agent_role: str | None = None
    on_behalf_of: str | None = None
    patient: str | None = None
    entities: tuple[str, ...] = ()
    query: str | None = None
    source_address: str | None = None
    request_id: str | None = None
    purpose: str | None = None
    detail: Mapping[str, Any] | None = None
    recorded: int = field(default_factory=now_ms)

    def __post_init__(self) -> None:
        if self.subtype not in SUBTYPES:
            raise ValueError(f"unknown audit subtype {self.subtype!r}: one of {sorted(SUBTYPES)}")
        action = self.action or DEFAULT_ACTION[self.subtype]
        if action not in ACTIONS:
            raise ValueError(f"audit action must be one of C R U D E, not {action!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be 0, 4, 8 or 12, not {self.outcome!r}")
        if not self.agent:
            raise ValueError("an audit event needs an agent ('anonymous' if nobody logged in)")
        if self.subtype == "break-glass" and not (self.purpose and self.purpose.strip()):
            raise ValueError("break-glass needs a stated reason (purpose)")
        object.__setattr__(self, "action", action)
        for name in (
            "agent",
            "agent_role",
            "on_behalf_of",
            "patient",
            "query",
            "source_address",
            "request_id",
            "purpose",
        ):
            object.__setattr__(self, name, _clean(getattr(self, name)))
        object.__setattr__(self, "entities", tuple(_clean(e) or "" for e in self.entities))
        if self.detail is not None:
            # Round-trip now so that what is hashed is exactly what a later read parses back.
            detail = orjson.loads(orjson.dumps(dict(self.detail)))
            try:
                jcs(detail)  # refuse here what could not be hashed at append time
            except (TypeError, ValueError) as exc:
                raise ValueError(f"audit detail cannot be canonicalised: {exc}") from exc
            object.__setattr__(self, "detail", detail)

    def fields(self) -> dict[str, Any]:
        """The hashed fields except chain_id and seq (which the chain assigns)."""
        return {
            "recorded": self.recorded,
            "action": self.action,
            "subtype": self.subtype,
            "outcome": self.outcome,
            "agent": self.agent,
            "agent_role": self.agent_role,
            "on_behalf_of": self.on_behalf_of,
            "patient": self.patient,
            "entities": list(self.entities),
            "query": self.query,
            "source_address": self.source_address,
            "request_id": self.request_id,
            "purpose": self.purpose,
            "detail": self.detail,
        }

    def row_values(self) -> dict[str, Any]:
        """Column values of audit_events except chain_id, seq and the hashes."""
        values = self.fields()
        values["entities"] = orjson.dumps(values["entities"]).decode()
        values["detail"] = None if self.detail is None else orjson.dumps(self.detail).decode()
        return values


def row_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The hashed fields of a stored audit_events row, parsed back to JSON values."""
    values = {name: row[name] for name in HASHED_FIELDS}
    values["entities"] = orjson.loads(values["entities"])
    if values["detail"] is not None:
        values["detail"] = orjson.loads(values["detail"])
    return values


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of an event's hashed fields."""
    return jcs(dict(fields))


_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE 754 doubles


def _orjson_is_jcs(value: Any) -> bool:
    """Whether orjson's sorted output is byte-for-byte RFC 8785 for ``value``: it is for
    strings (same escapes, raw UTF-8), safe integers, booleans, null, and objects with ASCII
    keys (JCS sorts keys by UTF-16 code units, orjson by UTF-8 bytes: they agree on ASCII).
    Floats differ (1.0 vs 1, 1e21 vs 1e+21) and go to the rfc8785 package."""
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, list | tuple):
        return all(_orjson_is_jcs(v) for v in value)
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and k.isascii() and _orjson_is_jcs(v) for k, v in value.items()
        )
    return False


def jcs(value: Any) -> bytes:
    """RFC 8785 JSON: orjson (C, ~20x faster) where its output is identical, else rfc8785."""
    if _orjson_is_jcs(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)


class CanonicalTemplate:
    """The canonical bytes of an event with only ``seq`` still unknown.

    Serialising is most of the cost of an append; doing it before taking the chain lock keeps
    the locked section to one hash. JCS sorts keys, so the bytes are the keys before "seq",
    then "seq", then the keys after it — exactly ``canonical_bytes`` of the full field set.
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        before = {k: v for k, v in fields.items() if k < "seq"}
        after = {k: v for k, v in fields.items() if k > "seq"}
        # Both are non-empty: "action" sorts before "seq", "subtype" after it.
        self._head = jcs(before)[:-1] + b',"seq":'
        self._tail = b"," + jcs(after)[1:]

    def render(self, seq: int) -> bytes:
        return self._head + str(seq).encode() + self._tail


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """hash = SM3(prev_hash || canonical event), prev_hash as its 32 raw bytes; hex."""
    return sm3(bytes.fromhex(prev_hash) + canonical).hex()


def row_hash(row: Mapping[Any, Any]) -> str:
    """The hash a stored row ought to carry, recomputed from its content and prev_hash."""
    prev = row["prev_hash"]
    try:
        prev_bytes = bytes.fromhex(prev)
    except (TypeError, ValueError):
        prev_bytes = str(prev).encode()
    return sm3(prev_bytes + canonical_bytes(row_fields(row))).hex()
