"""Security findings as GitHub workflow-command annotations, one line each (pure: the caller prints them).

``::error file=F,line=L,col=C,title=MCP001 cimd-any-domain::message`` puts a finding on the pull
request's diff at its field. Only findings that still count are shown: one a policy accepts, or one a
plan resolves, is no call to action. Messages quote manifest values, so each passes through
``visible`` before the escaping the runner expects.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.findings import Finding, Severity, ordered
from reconciler.render.github import _escape_data, _escape_property
from reconciler.textsafe import visible

COMMANDS: dict[Severity, str] = {"critical": "error", "high": "error", "medium": "warning", "low": "notice"}


def finding_annotations(findings: Iterable[Finding]) -> list[str]:
    """One workflow command per finding that counts, worst first."""
    return [_annotation(finding) for finding in ordered(findings) if finding.counts]


def _annotation(finding: Finding) -> str:
    properties: list[str] = []
    where = finding.location
    if where is not None:
        properties.append(f"file={_escape_property(visible(where.file))}")
        if where.line >= 1:  # 0 is "position unknown": GitHub would put it on no line at all
            properties.append(f"line={where.line}")
            if where.column >= 1:
                properties.append(f"col={where.column}")
    properties.append(f"title={_escape_property(visible(f'{finding.rule} {finding.name}'))}")
    message = f"{finding.address}: {finding.message}"
    if finding.field:
        message += f" ({finding.field})"
    return f"::{COMMANDS[finding.severity]} {','.join(properties)}::{_escape_data(visible(message))}"
