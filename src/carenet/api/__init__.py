"""The HTTP application: FHIR REST under /fhir, health and docs."""
