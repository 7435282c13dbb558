"""Masked resident ID numbers and phone numbers for what people read: portal lists, CLI output,
audit text and log lines (PRIV-1, 个人信息保护法 Art 28). No I/O.

FHIR API responses are not masked: a client allowed to read a resource gets it whole, or an
update would write the stars back (docs/crypto.md, "Masking"). Everything a person reads in a
list, and everything kept as text (the audit chain's query, a break-glass reason, a log line),
goes through here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from carenet.crypto.fields import mask_phone, mask_resident_id
from carenet.fhir.sensitive import (
    PHONE_KIND,
    RESIDENT_ID_KIND,
    kind_of_system,
    sensitive_elements,
)

# ASCII letters and digits must not touch a match, so that a run of digits inside a UUID, a
# timestamp or a longer number is left alone; Chinese text around a number is no boundary.
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
_RESIDENT_ID_RE = re.compile(_B + r"(?:\d{17}[\dXx]|\d{15})" + _E)
_PHONE_RE = re.compile(
    _B
    + r"(?:(?:(?:\+|00)?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}"  # mobile, optionally +86
    + r"|0\d{2,3}-\d{7,8})"  # landline with its area code: 010-12345678, 0571-8765432
    + _E
)
# Query parameters (last part of a chain, without modifier) that search phone numbers.
_PHONE_PARAMS = frozenset({"phone", "telecom"})


def mask_value(kind: str, value: str) -> str:
    """``1101**********002X`` for a resident ID, ``138****5678`` for a phone number."""
    return mask_resident_id(value) if kind == RESIDENT_ID_KIND else mask_phone(value)


def mask_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``resource`` for a human-facing list: every resident ID (Identifier with system
    ``RESIDENT_ID``) and phone number (ContactPoint ``phone``/``sms``) masked, wherever it sits.
    Never give this copy back to the API: written back, it would replace the real values."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(resource))
    for holder, kind, _path in list(sensitive_elements(copy)):
        holder["value"] = mask_value(kind, holder["value"])
    return copy


def mask_text(text: str) -> str:
    """``text`` with every run that looks like a resident ID or a Chinese phone number masked:
    for free text that may quote one (a log line, a break-glass reason, an error message)."""
    text = _RESIDENT_ID_RE.sub(lambda m: mask_resident_id(m.group(0)), text)
    return _PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_query(query: str) -> str:
    """A URL-encoded search query with resident IDs and phone numbers masked, e.g.
    ``identifier=urn:oid:2.16.156.10011.1.3|1101**********002X``, for the audit chain.

    Token values name their system (``system|value``): a resident-ID or phone system masks the
    whole value; ``phone=``/``telecom=`` without a system mask it as a phone number; anything
    else still goes through :func:`mask_text` (chains, ``_has``, ``:identifier``...)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, _mask_param(name, value)) for name, value in pairs])


def _mask_param(name: str, value: str) -> str:
    code = name.rsplit(".", 1)[-1].split(":", 1)[0]
    parts = []
    for alternative in value.split(","):
        system, bar, token = alternative.rpartition("|")
        kind = kind_of_system(system) if bar else None
        if kind is None and not bar and code in _PHONE_PARAMS:
            kind = PHONE_KIND
        if kind is not None and token:
            alternative = f"{system}{bar}{mask_value(kind, token)}"
        parts.append(mask_text(alternative))
    return ",".join(parts)
