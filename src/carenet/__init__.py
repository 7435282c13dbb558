"""CareNet: an Internet + Healthcare (互联网+医疗健康) platform built on FHIR R4."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
