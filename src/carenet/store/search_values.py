"""Search value syntax, before any SQL: escapes, OR lists, prefixes, dates, numbers, quantities.

Every malformed value is a 400 naming the parameter as sent (R4 3.1.1.x).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from carenet.fhir.outcomes import bad_request
from carenet.store import indexer

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash, and unescape ``\\, \\| \\$ \\\\``."""
    if "\\" not in value:
        return value.split(sep)  # nothing escaped, the common case: no character-by-character walk
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == sep:
                cur.append(nxt)
            else:
                cur.append(ch + nxt)
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def unescape(s: str) -> str:
    return s.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def or_values(value: str) -> list[str]:
    return [v for v in split_escaped(value, ",") if v != ""]


def parse_prefix(
    value: str, name: str, allowed: tuple[str, ...] = DATE_PREFIXES
) -> tuple[str, str]:
    if len(value) >= 2 and value[:2].isalpha() and value[:2].islower():
        if value[:2] not in allowed:
            raise bad_request(f"Invalid prefix {value[:2]!r} in {name}={value!r}", name)
        return value[:2], value[2:]
    return "eq", value


def parse_date(value: str, name: str, tz: str) -> tuple[str, int, int]:
    prefix, rest = parse_prefix(value, name)
    # An unencoded '+' in a URL arrives as a space: 2020-01-01T10:00:00 08:00.
    if len(rest) > 6 and rest[-6] == " " and rest[-3] == ":":
        rest = rest[:-6] + "+" + rest[-5:]
    iv = indexer.date_interval(rest, tz)
    if iv is None:
        raise bad_request(f"Invalid date {value!r} for parameter {name}", name)
    return prefix, iv[0], iv[1]


def parse_number(text: str, name: str) -> tuple[Decimal, Decimal]:
    """The number and half its precision: 5.4 → (5.4, 0.05)."""
    t = text.strip()
    try:
        d = Decimal(t)
    except (InvalidOperation, ValueError):
        d = Decimal("NaN")
    if not d.is_finite() or not t or t[-1] not in "0123456789.":
        raise bad_request(f"Invalid number {text!r} for parameter {name}", name)
    if abs(d) >= indexer.NUMBER_LIMIT:
        raise bad_request(f"Number {text!r} out of range for parameter {name}", name)
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    if exp < -20:
        raise bad_request(f"Number {text!r} has too many decimal places for parameter {name}", name)
    return d, Decimal(5).scaleb(exp - 1)


def parse_quantity(value: str, name: str) -> tuple[str, Decimal, Decimal, str | None, str | None]:
    parts = split_escaped(value, "|")
    if len(parts) not in (1, 3):
        raise bad_request(
            f"Invalid quantity {value!r} for parameter {name} ([prefix]number|system|code)",
            name,
        )
    prefix, rest = parse_prefix(parts[0], name)
    d, half = parse_number(rest, name)
    system = unescape(parts[1]) if len(parts) == 3 and parts[1] else None
    code = unescape(parts[2]) if len(parts) == 3 and parts[2] else None
    return prefix, d, half, system, code


def uri_above(value: str) -> list[str]:
    """Every URL of which ``value`` is at or below (cut at '/' boundaries past the host)."""
    out = [value]
    head, sep, rest = value.partition("://")
    if not sep:
        return out
    segs = rest.split("/")
    for i in range(len(segs) - 1, 0, -1):
        out.append(f"{head}://{'/'.join(segs[:i])}")
    return out


def check_text(text: str, name: str) -> None:
    # NUL and lone surrogates cannot be sent to PostgreSQL; refuse them as bad input.
    if "\x00" in text:
        raise bad_request(f"Parameter {name!r} contains a NUL character", name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"Parameter {name!r} is not valid UTF-8 text", name) from None


def int_param(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0 or not value.strip().isdigit():
        raise bad_request(f"Invalid {name} {value!r} (a non-negative integer)", name)
    return n
