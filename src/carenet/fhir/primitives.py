"""Lexical rules of the FHIR R4 primitive types and of the XHTML narrative.

Each checker takes the JSON value of one primitive and returns an English problem description,
or None when the value is valid. The regexes are the ones the R4 StructureDefinitions carry
(``http://hl7.org/fhir/StructureDefinition/regex``), plus the calendar checks a regex cannot do.
"""

from __future__ import annotations

import binascii
import calendar
import re
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing, see check_xhtml
from collections.abc import Callable
from decimal import Decimal
from typing import Any

MAX_STRING_BYTES = 1024 * 1024
_ILLEGAL_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
DATE_RE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
DATETIME_RE = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T" + _TIME + _TZ + r")?)?)?"
)
INSTANT_RE = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T" + _TIME + _TZ)
TIME_RE = re.compile(_TIME)
ID_RE = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
CODE_RE = re.compile(r"[^\s]+(\s[^\s]+)*")
URI_RE = re.compile(r"\S*")
OID_RE = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WS = re.compile(r"\s+")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

XHTML_NS = "http://www.w3.org/1999/xhtml"
# txt-1: "only the basic html formatting elements" (R4 Narrative.div).
XHTML_ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em "
    "h1 h2 h3 h4 h5 h6 hr i img li ol p pre q samp small span strong sub sup table tbody td "
    "tfoot th thead tr tt ul var".split()
)
_UNSAFE_URL = re.compile(r"^\s*(javascript|vbscript|data:text/html)", re.IGNORECASE)


def _string_problem(value: Any, type_name: str) -> str | None:
    if not isinstance(value, str):
        return f"Error parsing JSON: the primitive value must be a string (was {_json_kind(value)})"
    if value == "":
        return "@value cannot be empty"
    if len(value) > MAX_STRING_BYTES // 4 and len(value.encode("utf-8")) > MAX_STRING_BYTES:
        return f"value is longer than permitted maximum length of 1 MB ({MAX_STRING_BYTES} bytes)"
    if type_name in ("string", "markdown") and _ILLEGAL_CONTROL.search(value):
        return "The string value contains illegal control characters"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _valid_calendar_day(value: str) -> bool:
    if len(value) < 10 or value[8:10] <= "28":
        return True  # every month has 28 days (the regex has already checked the digits)
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    return day <= calendar.monthrange(year, month)[1]


# A value that is printable (str.isprintable is False for every whitespace character but the
# space) and has no space has no whitespace at all: for these types that settles it at C speed.
_NO_WHITESPACE_ENOUGH = frozenset({"code", "uri", "url", "canonical"})
_FAST_LENGTH = MAX_STRING_BYTES // 4  # below this many characters no value can pass 1 MB


def _check_regex(regex: re.Pattern[str], label: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        problem = _string_problem(value, label)
        if problem:
            return problem
        if not regex.fullmatch(value):
            return f"Not a valid {label} format: '{_clip(value)}'"
        return None

    if label not in _NO_WHITESPACE_ENOUGH:
        return check

    def check_fast(value: Any) -> str | None:
        if (
            type(value) is str
            and 0 < len(value) < _FAST_LENGTH
            and value.isprintable()
            and " " not in value
        ):
            return None
        return check(value)

    return check_fast


def _check_dated(regex: re.Pattern[str], label: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        problem = _string_problem(value, label)
        if problem:
            return problem
        if not regex.fullmatch(value) or not _valid_calendar_day(value):
            return f"Not a valid {label} format: '{_clip(value)}'"
        return None

    return check


def _clip(value: str, n: int = 80) -> str:
    return value if len(value) <= n else value[:n] + "..."


def check_string(value: Any) -> str | None:
    if type(value) is str and 0 < len(value) < _FAST_LENGTH and value.isprintable():
        return None  # no control character can be printable
    return _string_problem(value, "string")


def check_markdown(value: Any) -> str | None:
    if type(value) is str and 0 < len(value) < _FAST_LENGTH and value.isprintable():
        return None
    return _string_problem(value, "markdown")


def check_boolean(value: Any) -> str | None:
    if not isinstance(value, bool):
        return (
            f"Error parsing JSON: the primitive value must be a boolean (was {_json_kind(value)})"
        )
    return None


def _check_int(low: int, high: int, label: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"Error parsing JSON: the primitive value must be a number (was {_json_kind(value)}) with an integer value"
        if value < low:
            return f"value is less than permitted minimum value of {low} for {label}"
        if value > high:
            return f"value is greater than permitted maximum value of {high} for {label}"
        return None

    return check


def check_decimal(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return f"Error parsing JSON: the primitive value must be a number (was {_json_kind(value)})"
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "The value is not a valid decimal"
    return None


def check_base64(value: Any) -> str | None:
    problem = _string_problem(value, "base64Binary")
    if problem:
        return problem
    compact = _WS.sub("", value)
    if len(compact) % 4 or not _B64_RE.fullmatch(compact):
        return f"The value '{_clip(value)}' is not a valid Base64 value"
    try:
        binascii.a2b_base64(compact)
    except binascii.Error:
        return f"The value '{_clip(value)}' is not a valid Base64 value"
    return None


def base64_size(value: str) -> int | None:
    """Decoded length of base64 text, or None if it is not valid base64."""
    compact = _WS.sub("", value)
    if len(compact) % 4 or not _B64_RE.fullmatch(compact):
        return None
    try:
        return len(binascii.a2b_base64(compact))
    except binascii.Error:
        return None


def check_xhtml(value: Any) -> list[str]:
    """Narrative.div: well-formed XHTML, a ``div`` in the XHTML namespace, txt-1 and txt-2."""
    if not isinstance(value, str):
        return [
            f"Error parsing JSON: the primitive value must be a string (was {_json_kind(value)})"
        ]
    if "<!DOCTYPE" in value or "<!ENTITY" in value:
        # No DTDs: they are never needed in a narrative and are how entity bombs arrive.
        return ["The XHTML must not contain a DOCTYPE or entity declarations"]
    try:
        root = ET.fromstring(value)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        text = str(exc)
        if "undefined entity" in text:
            m = re.search(r"&[A-Za-z0-9#]+;", value[_offset(value, exc) :])
            ent = m.group(0) if m else "?"
            return [f"Invalid entity in the XHTML ('{ent}')"]
        return [f"The XHTML is not well-formed: {text}"]
    problems: list[str] = []
    if root.tag != "{" + XHTML_NS + "}div":
        problems.append(
            "Wrong name on the XHTML ('"
            + _local(root.tag)
            + "') - must be 'div' in the namespace http://www.w3.org/1999/xhtml"
        )
    has_content = False
    for el in root.iter():
        name = _local(el.tag) if isinstance(el.tag, str) else ""
        if isinstance(el.tag, str) and not el.tag.startswith("{" + XHTML_NS + "}"):
            problems.append(f"Wrong namespace on the XHTML ('{el.tag}')")
        elif name not in XHTML_ELEMENTS:
            problems.append(f"Invalid element name in the XHTML ('{name}')")
        for attr, attr_value in el.attrib.items():
            local = _local(attr).lower()
            if local.startswith("on"):
                problems.append(f"Invalid attribute name in the XHTML ('{local}' on '{name}')")
            elif local in ("href", "src") and _UNSAFE_URL.match(attr_value):
                problems.append(f"Invalid URL in the XHTML ('{local}' on '{name}')")
        if (
            name == "img"
            or (el.text and el.text.strip())
            or (el is not root and el.tail and el.tail.strip())
        ):
            has_content = True
    if not has_content:
        problems.append(
            "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace content'"
        )
    return problems


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _offset(value: str, exc: ET.ParseError) -> int:
    line, col = exc.position
    lines = value.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col


PRIMITIVE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "string": check_string,
    "markdown": check_markdown,
    "boolean": check_boolean,
    "integer": _check_int(INT32_MIN, INT32_MAX, "integer"),
    "positiveInt": _check_int(1, INT32_MAX, "positiveInt"),
    "unsignedInt": _check_int(0, INT32_MAX, "unsignedInt"),
    "decimal": check_decimal,
    "id": _check_regex(ID_RE, "id"),
    "code": _check_regex(CODE_RE, "code"),
    "uri": _check_regex(URI_RE, "uri"),
    "url": _check_regex(URI_RE, "url"),
    "canonical": _check_regex(URI_RE, "canonical"),
    "oid": _check_regex(OID_RE, "oid"),
    "uuid": _check_regex(UUID_RE, "uuid"),
    "date": _check_dated(DATE_RE, "date"),
    "dateTime": _check_dated(DATETIME_RE, "dateTime"),
    "instant": _check_dated(INSTANT_RE, "instant"),
    "time": _check_regex(TIME_RE, "time"),
    "base64Binary": check_base64,
}


def check_primitive(type_name: str, value: Any) -> str | None:
    """The problem with ``value`` as an R4 ``type_name``, or None. xhtml: use check_xhtml."""
    check = PRIMITIVE_CHECKS.get(type_name, check_string)
    return check(value)


def check_resource_id(value: Any) -> str | None:
    """Resource.id: 1-64 characters of [A-Za-z0-9-.] (R4 id type), Java validator wording."""
    if not isinstance(value, str):
        return f"Error parsing JSON: the primitive value must be a string (was {_json_kind(value)})"
    if value == "":
        return "@value cannot be empty"
    if len(value) > 64:
        return f"Invalid Resource id: Too long ({len(value)} chars)"
    if not ID_RE.fullmatch(value):
        return f"Invalid Resource id: Invalid Characters ('{value}')"
    return None
