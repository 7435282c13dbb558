"""OperationOutcome errors: one exception type and small factories, one per HTTP status.

Everything a client sent that we refuse becomes an ``OperationOutcomeError``; the API turns it
into an OperationOutcome body with the status it carries (STYLE.md, "Errors").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType), text and FHIRPath expressions."""

    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    details_code: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.details_code:
            out["details"] = {
                "coding": [
                    {
                        "system": "https://carenet.example.org/fhir/CodeSystem/outcome",
                        "code": self.details_code,
                    }
                ],
                "text": self.diagnostics,
            }
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information(text: str, code: str = "informational") -> dict[str, Any]:
    return outcome([Issue("information", code, text)])


@dataclass
class OperationOutcomeError(Exception):
    """A refusal to carry out a request, with the HTTP status and the issues that explain it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues) or f"HTTP {self.status}"

    def to_outcome(self) -> dict[str, Any]:
        return outcome(self.issues)


def _err(
    status: int, code: str, text: str, expression: str | list[str] | None, details: str | None
) -> OperationOutcomeError:
    if expression is None:
        expr: tuple[str, ...] = ()
    elif isinstance(expression, str):
        expr = (expression,)
    else:
        expr = tuple(expression)
    return OperationOutcomeError(status, [Issue("error", code, text, expr, details)])


def bad_request(
    text: str,
    expression: str | list[str] | None = None,
    *,
    code: str = "invalid",
    details: str | None = None,
) -> OperationOutcomeError:
    return _err(400, code, text, expression, details)


def unprocessable(
    text: str,
    expression: str | list[str] | None = None,
    *,
    code: str = "invalid",
    details: str | None = None,
) -> OperationOutcomeError:
    return _err(422, code, text, expression, details)


def invalid_resource(issues: list[Issue], status: int = 400) -> OperationOutcomeError:
    return OperationOutcomeError(status, list(issues))


def not_found(text: str, expression: str | None = None) -> OperationOutcomeError:
    return _err(404, "not-found", text, expression, None)


def gone(text: str) -> OperationOutcomeError:
    return _err(410, "deleted", text, None, None)


def conflict(text: str, expression: str | None = None) -> OperationOutcomeError:
    return _err(409, "conflict", text, expression, None)


def precondition_failed(text: str) -> OperationOutcomeError:
    return _err(412, "conflict", text, None, None)


def not_supported(text: str, expression: str | None = None) -> OperationOutcomeError:
    return _err(400, "not-supported", text, expression, None)


def method_not_allowed(text: str) -> OperationOutcomeError:
    return _err(405, "not-supported", text, None, None)


def too_costly(text: str) -> OperationOutcomeError:
    return _err(400, "too-costly", text, None, None)


def unsupported_media_type(text: str) -> OperationOutcomeError:
    return _err(415, "not-supported", text, None, None)


def not_acceptable(text: str) -> OperationOutcomeError:
    return _err(406, "not-supported", text, None, None)
