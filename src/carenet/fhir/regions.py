"""GB/T 2260 administrative divisions CareNet knows: the demo region (浙江省) as data.

Only codes we have checked against published lists are here: one province, two of its cities
and three counties under them. A deployment loads its own region's full list; this small table is
what the demo region and the tests need. Codes are strings (leading digits matter, never ints).

Where a division code goes in FHIR: ``Address.district`` and ``Address.city`` are free-text
names and ``Address.postalCode`` is the postal code (邮政编码), so the GB/T 2260 code of an
address travels in the extension ``ADDRESS_DIVISION_EXTENSION`` with a ``valueCoding`` in
``carenet.fhir.identifiers.REGION_CODE`` (see :func:`address_division_extension`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carenet.fhir.identifiers import CARENET_BASE, REGION_CODE

#: Extension on Address carrying the GB/T 2260 code of the most specific division of the address.
ADDRESS_DIVISION_EXTENSION = f"{CARENET_BASE}/StructureDefinition/address-division-code"


@dataclass(frozen=True, slots=True)
class Division:
    """One GB/T 2260 administrative division."""

    code: str
    name: str
    level: str  # "province" | "city" | "county"
    parent: str | None


DIVISIONS: dict[str, Division] = {
    d.code: d
    for d in (
        Division("330000", "浙江省", "province", None),
        Division("330100", "杭州市", "city", "330000"),
        Division("330300", "温州市", "city", "330000"),
        Division("330122", "桐庐县", "county", "330100"),
        Division("330127", "淳安县", "county", "330100"),
        Division("330324", "永嘉县", "county", "330300"),
    )
}


def division(code: str) -> Division:
    """The division with this code; KeyError when CareNet does not know it."""
    return DIVISIONS[code]


def is_known_division(code: str) -> bool:
    return code in DIVISIONS


def children(code: str) -> list[Division]:
    """The known divisions directly under ``code``, in code order."""
    return sorted((d for d in DIVISIONS.values() if d.parent == code), key=lambda d: d.code)


def lineage(code: str) -> list[Division]:
    """The division and its parents, province first: 330122 -> [浙江省, 杭州市, 桐庐县]."""
    chain: list[Division] = []
    current: str | None = code
    while current is not None:
        d = DIVISIONS[current]
        chain.append(d)
        current = d.parent
    return list(reversed(chain))


def address_division_extension(code: str) -> dict[str, Any]:
    """The Address extension carrying a known division's GB/T 2260 code."""
    d = DIVISIONS[code]
    return {
        "url": ADDRESS_DIVISION_EXTENSION,
        "valueCoding": {"system": REGION_CODE, "code": d.code, "display": d.name},
    }
