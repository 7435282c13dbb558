"""Loading FHIR R4's tables when a server process starts: the search parameters of every
resource type and the element definitions, which the first write or search would otherwise
load (about 100-160 ms of one thread, once per process; measured with cProfile)."""

from __future__ import annotations

from carenet.fhir import definitions, searchparams


def preload() -> None:
    """Build the tables now; later calls find them cached."""
    definitions.resource_types()
    searchparams.params_for("Patient")  # builds the table of every resource type at once
