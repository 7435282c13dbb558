"""Rule findings: the one small value every pure rule returns (STYLE.md, "Rules").

A finding carries a stable code (``ID-RESIDENT-CHECK-DIGIT``), a severity from FHIR's
IssueSeverity, the message in Chinese and English, and the FHIRPath of what it concerns. Services
turn findings into OperationOutcome issues with :meth:`Finding.to_issue`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from carenet.fhir.outcomes import Issue

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One coded result of a rule: what is wrong (or worth noting), where, in both languages."""

    code: str
    severity: Severity
    message_zh: str
    message_en: str
    expression: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_issue(self, issue_type: str = "business-rule") -> Issue:
        """This finding as an OperationOutcome issue; the rule code goes into issue.details."""
        return Issue(
            severity=self.severity,
            code=issue_type,
            diagnostics=f"{self.message_zh} ({self.message_en})",
            expression=(self.expression,) if self.expression else (),
            details_code=self.code,
        )


def has_errors(findings: Iterable[Finding]) -> bool:
    """True when any finding is an error or fatal: the action it concerns must not proceed."""
    return any(f.is_error for f in findings)
