"""Every official R4 example resource validates with zero errors (shared/data, CC0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carenet.fhir.jsonparse import parse_json
from carenet.fhir.validation import validate_resource

EXAMPLES = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "data"
    / "fhir-examples"
    / "r4-spec-examples"
)
FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []


@pytest.mark.skipif(not FILES, reason=f"shared test data not found at {EXAMPLES}")
def test_the_example_folder_holds_all_728_official_examples() -> None:
    assert len(FILES) == 728


@pytest.mark.skipif(not FILES, reason=f"shared test data not found at {EXAMPLES}")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_official_example_validates_without_errors(path: Path) -> None:
    resource = parse_json(path.read_bytes())
    errors = [i for i in validate_resource(resource) if i.severity in ("error", "fatal")]
    assert errors == []
