"""Security findings as a SARIF 2.1.0 log for GitHub code scanning (pure: the caller writes it).

One run of one tool: every rule that ran as a ``reportingDescriptor`` (with GitHub's
``security-severity``), every finding that still stands as a result. A result is placed at its file,
line and column when the finding comes from a manifest, and always names its object as a logical
location; a partial fingerprint made from the finding's key lets GitHub follow one alert across
commits even when lines move. Findings a policy accepts are kept, with an external suppression that
carries the reason; resolved ones (fixed by a plan) are left out, as there is nothing left to alert on.

Every text taken from a finding or a rule passes through ``visible``: it is data, shown to people.
"""

from __future__ import annotations

import hashlib
import json
import os.path
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reconciler.findings import Finding, Rule, Severity, ordered
from reconciler.textsafe import visible

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "mcp-reconciler"
INFORMATION_URI = "https://mcp-reconciler.dev"
SOURCE_ROOT = "%SRCROOT%"  # the base GitHub resolves relative artifact URIs against: the checkout
FINGERPRINT_KEY = "mcpReconciler/v1"  # bump the version if the fingerprint's inputs ever change
RULE_TAGS = ("security", "mcp", "oauth")

LEVELS: dict[Severity, str] = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
# GitHub reads a rule's "security-severity" (a number as a string) to rank its alerts: over 9.0 is
# critical, 7.0 to 8.9 high, 4.0 to 6.9 medium, below 4.0 low.
SECURITY_SEVERITIES: dict[Severity, str] = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0"}


def to_sarif(
    findings: Sequence[Finding], rules: Sequence[Rule], *, tool_version: str, base: Path | None = None
) -> dict[str, Any]:
    """A SARIF log of ``findings`` reported by ``rules``; file paths under ``base`` (default: the
    current directory, where CI checks the repository out) are written relative to it."""
    root = base if base is not None else Path.cwd()
    unique_rules: list[Rule] = []  # SARIF wants each rule once: the first of an id is kept
    index_of: dict[str, int] = {}
    for rule in rules:
        if rule.id not in index_of:
            index_of[rule.id] = len(unique_rules)
            unique_rules.append(rule)
    results = [
        _result(finding, index_of.get(finding.rule), root)
        for finding in ordered(findings)
        if finding.status != "resolved"
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": tool_version,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule_descriptor(rule) for rule in unique_rules],
                    }
                },
                "columnKind": "unicodeCodePoints",  # columns count characters, as the YAML reader does
                "results": results,
            }
        ],
    }


def fingerprint(finding: Finding) -> str:
    """The sha256 of the finding's key (rule, server, client, detail): stable across commits and line
    moves, distinct for two findings a plan tells apart."""
    canonical = json.dumps(list(finding.key), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "id": rule.id,
        "name": visible(rule.name),
        "shortDescription": {"text": visible(rule.summary)},
        "fullDescription": {"text": visible(rule.rationale)},
        "help": {"text": _help_text(rule), "markdown": _help_markdown(rule)},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "tags": list(RULE_TAGS),
            "security-severity": SECURITY_SEVERITIES[rule.severity],
            "precision": "high",
        },
    }
    if rule.references:
        descriptor["helpUri"] = visible(rule.references[0].url)
    return descriptor


def _help_text(rule: Rule) -> str:
    lines = [f"Fix: {visible(rule.fix)}"]
    if rule.references:
        lines += ["", "References:"]
        lines += [f"- {visible(ref.title)}: {visible(ref.url)}" for ref in rule.references]
    return "\n".join(lines)


def _help_markdown(rule: Rule) -> str:
    lines = [f"**Fix:** {_markdown_text(rule.fix)}"]
    if rule.references:
        lines += ["", "**References:**", ""]
        lines += [f"- {_markdown_link(ref.title, ref.url)}" for ref in rule.references]
    return "\n".join(lines)


def _markdown_text(text: str) -> str:
    # A plugin's text could hold markup or a raw HTML tag; GitHub should show it, not render it.
    escaped = visible(text).replace("\\", "\\\\")
    for char in "`*_[]<>":
        escaped = escaped.replace(char, f"\\{char}")
    return escaped


def _markdown_link(title: str, url: str) -> str:
    # Percent-encode what would end the link's destination early (spaces, parentheses, angle brackets).
    target = visible(url).replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    target = target.replace("<", "%3C").replace(">", "%3E")
    return f"[{_markdown_text(title)}]({target})"


def _result(finding: Finding, rule_index: int | None, root: Path) -> dict[str, Any]:
    text = f"{finding.address}: {finding.message}"
    if finding.field:
        text += f" ({finding.field})"
    location: dict[str, Any] = {"logicalLocations": [{"name": visible(finding.address), "kind": "object"}]}
    if finding.location is not None:
        location["physicalLocation"] = _physical_location(
            finding.location.file, finding.location.line, finding.location.column, root
        )
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "level": LEVELS[finding.severity],
        "message": {"text": visible(text)},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(finding)},
    }
    if rule_index is not None:
        result["ruleIndex"] = rule_index
    if finding.status is not None:
        result["properties"] = {"status": finding.status}
    if finding.excepted is not None:
        result["suppressions"] = [
            {"kind": "external", "status": "accepted", "justification": visible(finding.excepted)}
        ]
    return result


def _physical_location(file: str, line: int, column: int, root: Path) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": artifact_location(file, root)}
    if line >= 1:
        region = {"startLine": line}
        if column >= 1:
            region["startColumn"] = column
        physical["region"] = region
    return physical


def artifact_location(file: str, root: Path) -> dict[str, str]:
    """``file`` as a SARIF artifact location: a relative POSIX URI under ``%SRCROOT%`` when it is under
    ``root``, which GitHub maps to the repository; else an absolute ``file:`` URI, which it cannot."""
    given = Path(file)
    # Only lexical: normpath folds "a/../b" without reading the disk (this module does no I/O).
    absolute = Path(os.path.normpath(given if given.is_absolute() else Path.cwd() / given))
    base = Path(os.path.normpath(root if root.is_absolute() else Path.cwd() / root))
    if absolute.is_relative_to(base):
        relative = absolute.relative_to(base).as_posix()
        # quote() percent-encodes spaces and non-ASCII so the URI is a valid reference; "/" stays.
        return {"uri": quote(relative), "uriBaseId": SOURCE_ROOT}
    return {"uri": absolute.as_uri()}
