"""Security findings on a terminal: a line each, worst first, and a summary (pure; markdown: render.markdown).

A message quotes values from manifests or the live API, so each line passes through ``visible``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reconciler.findings import SEVERITIES, Finding, counts, ordered
from reconciler.textsafe import visible

COLOURS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36"}


def where(finding: Finding) -> str:
    """``FILE:LINE:COL`` of the finding, or its object when it has no place in a file."""
    at = finding.location
    return f"{at.file}:{at.line}:{at.column}" if at is not None else finding.address


def finding_line(finding: Finding, *, colour: bool = False) -> str:
    """``FILE:LINE:COL: high MCP007 callback-plain-http: server "x": message`` (and why it is accepted)."""
    severity: str = finding.severity
    if colour:  # added around text already made visible: the only control codes in the line
        severity = f"\x1b[{COLOURS[finding.severity]}m{severity}\x1b[0m"
    head = visible(f"{where(finding)}: ")
    text = f"{finding.rule} {finding.name}: "
    text += "" if finding.location is None else f"{finding.address}: "
    text += finding.message
    if finding.field:
        text += f" ({finding.field})"
    if finding.excepted is not None:
        text += f" [accepted by the policy: {finding.excepted}]"
    return f"{head}{severity} {visible(text)}"


def tally(findings: Iterable[Finding], *, accepted: bool = True) -> str:
    """``1 high, 2 medium`` (worst first), ``1 accepted`` for those the policy accepts, or ``none``."""
    counted = counts(findings)
    parts = [f"{counted[s]} {s}" for s in reversed(SEVERITIES) if counted[s]]
    if accepted and counted["excepted"]:
        parts.append(f"{counted['excepted']} accepted")
    return ", ".join(parts) or "none"


def summary(findings: Sequence[Finding]) -> str:
    """One line: how many findings of each severity, and how many the policy accepts."""
    shown = [f for f in findings if f.status != "resolved"]
    accepted = sum(1 for f in shown if f.excepted is not None)
    counted = len(shown) - accepted
    if not shown:
        return "No security findings."
    text = f"{counted} security finding{'s' if counted != 1 else ''}"
    text += f" ({tally(shown, accepted=False)})" if counted else ""
    if accepted:
        text += f"; {accepted} accepted by the policy's exceptions"
    return text + "."


def render_findings_text(findings: Sequence[Finding], *, colour: bool = False) -> str:
    """``lint``'s text output: one line per finding, worst first, then the summary."""
    lines = [finding_line(f, colour=colour) for f in ordered(findings)]
    return "\n".join([*lines, summary(findings)]) + "\n"


def plan_findings_text(findings: Sequence[Finding], *, colour: bool = False) -> list[str]:
    """A plan's findings section: each new one in full (what the change makes worse), the existing
    ones counted, the resolved ones named."""
    if not findings:
        return []
    new = [f for f in findings if f.status == "new"]
    existing = [f for f in findings if f.status == "existing"]
    resolved = [f for f in findings if f.status == "resolved"]
    lines = [
        f"Security findings: {len(new)} new ({tally(new)}), {len(existing)} existing ({tally(existing)}), "
        f"{len(resolved)} resolved."
    ]
    lines += [f"  new: {finding_line(f, colour=colour)}" for f in new]
    lines += [f"  resolved: {finding_line(f)}" for f in resolved]
    if existing:
        lines.append("  (existing findings: mcp-reconciler lint lists them all)")
    return lines
