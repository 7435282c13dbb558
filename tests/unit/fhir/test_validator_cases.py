"""The HL7 validator test cases (FHIR/fhir-test-cases, R4 subset in shared/data).

Cases flagged ``core_structural_invalid`` must be rejected, with an error at every expression
the HL7 Java validator reports. Expressions are compared after one normalisation, applied to
both sides: the ``/*Type/id*/`` annotations the Java validator puts after an embedded resource
are removed (``Bundle.entry[0].resource/*Patient/p1*/.id`` -> ``Bundle.entry[0].resource.id``).
Cases the Java validator accepts must give zero errors.

The cases run with ``ValidationOptions.java_defaults()`` (unresolvable extensions and relative
canonicals are errors, as in the Java validator) plus the case's own ``validator_options``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from carenet.fhir.jsonparse import parse_json
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.validation import ValidationOptions, validate_resource

CASES_DIR = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "data"
    / "fhir-examples"
    / "r4-validator-testcases"
)
MANIFEST = CASES_DIR / "manifest.json"

# Cases the Java validator accepts that we do not run, each with its reason.
EXCLUDED = {
    "json-comments-1-yes": "json5 mode (allow-comments): CareNet accepts strict JSON only",
    "json-comments-2-yes": "json5 mode (allow-comments): CareNet accepts strict JSON only",
    "extension-version-restriction-range-r4": "needs the supporting StructureDefinition structuredefinition-version-range.xml",
    "extension-version-restriction-range-ctxt-r4": "needs the supporting StructureDefinition structuredefinition-version-range-ctxt.xml",
}


def _load_cases() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))["test_cases"]
    return cases


CASES = _load_cases()
INVALID = [c for c in CASES if c["core_structural_invalid"]]
VALID = [c for c in CASES if c["expected_error_count_java"] == 0]
needs_data = pytest.mark.skipif(not CASES, reason=f"validator test cases not found at {MANIFEST}")


def _normalise(expression: str) -> str:
    return re.sub(r"/\*.*?\*/", "", expression)


def _options(case: dict[str, Any]) -> ValidationOptions:
    opts = case["validator_options"]
    changes: dict[str, Any] = {}
    if opts.get("examples") is False:
        changes["allow_example_urls"] = False
    if opts.get("security-checks"):
        changes["security_checks"] = True
    if opts.get("noHtmlInMarkdown"):
        changes["html_in_markdown"] = False
    if opts.get("validateContains") == "IGNORE":
        changes["validate_contained"] = False
    if opts.get("no-experimental-content"):
        changes["reject_experimental"] = True
    return ValidationOptions.java_defaults(**changes)


@needs_data
@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in INVALID])
def test_structurally_invalid_case_is_rejected_at_every_expected_expression(
    case: dict[str, Any],
) -> None:
    raw = (CASES_DIR / case["file"]).read_bytes()
    if case["resourceType"] == "(unparseable JSON)":
        with pytest.raises(OperationOutcomeError) as caught:
            parse_json(raw)
        assert caught.value.status == 400
        assert caught.value.issues[0].code == "structure"
        return
    errors = [
        i
        for i in validate_resource(parse_json(raw), options=_options(case))
        if i.severity in ("error", "fatal")
    ]
    assert errors, "expected the case to be rejected"
    ours = {_normalise(x) for issue in errors for x in issue.expression}
    missing = [
        e
        for e in case["expected_errors"]
        if e["expression"] and not any(_normalise(x) in ours for x in e["expression"])
    ]
    assert missing == [], f"no error at the expected expressions; we reported {sorted(ours)}"


@needs_data
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["name"]) for c in VALID if c["name"] not in EXCLUDED]
)
def test_case_the_java_validator_accepts_has_no_errors(case: dict[str, Any]) -> None:
    resource = parse_json((CASES_DIR / case["file"]).read_bytes())
    errors = [
        i
        for i in validate_resource(resource, options=_options(case))
        if i.severity in ("error", "fatal")
    ]
    assert errors == []


@needs_data
def test_every_excluded_case_exists_in_the_manifest() -> None:
    names = {c["name"] for c in CASES}
    assert set(EXCLUDED) <= names
