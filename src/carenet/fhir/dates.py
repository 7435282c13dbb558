"""FHIR date, dateTime and instant values as UTC milliseconds, honouring their precision."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

_DT_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_instant_ms(value: str, tz: str = "UTC") -> int:
    """The start of a date/dateTime/instant in ms since the epoch (values without a zone in ``tz``).

    Raises ValueError for anything that is not a FHIR date, dateTime or instant.
    """
    low, _ = parse_interval_ms(value, tz)
    return low


def parse_interval_ms(value: str, tz: str = "UTC") -> tuple[int, int]:
    """The closed interval [low, high] (ms, UTC) that a value covers at its precision."""
    m = _DT_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a FHIR date, dateTime or instant")
    g = m.groupdict()
    zone = _zone(g["tz"], tz)
    year = int(g["y"])
    month = int(g["m"] or 1)
    day = int(g["d"] or 1)
    hour = int(g["H"] or 0)
    minute = int(g["M"] or 0)
    second = int(g["S"] or 0)
    frac = g["f"] or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    if g["m"] is None:
        end = (
            start.replace(year=year + 1)
            if year < 9999
            else datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=zone) + timedelta(milliseconds=1)
        )
    elif g["d"] is None:
        end = start.replace(year=year + (month == 12), month=month % 12 + 1)
    elif g["H"] is None:
        end = start + timedelta(days=1)
    elif g["S"] is None:
        end = start + timedelta(minutes=1)
    elif not frac:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=max(1, 10 ** (6 - min(len(frac) - 1, 6))))
    low = _ms(start)
    high = _ms(end) - 1
    return low, max(low, high)


def _zone(tzpart: str | None, default: str) -> tzinfo:
    if tzpart is None:
        return ZoneInfo(default) if default != "UTC" else UTC
    if tzpart == "Z":
        return UTC
    sign = 1 if tzpart[0] == "+" else -1
    hh, mm = int(tzpart[1:3]), int(tzpart[4:6])
    return timezone(sign * timedelta(hours=hh, minutes=mm))


def _ms(dt: datetime) -> int:
    return (
        int(dt.astimezone(UTC).timestamp() * 1000)
        if dt.year > 1
        else int((dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
    )
