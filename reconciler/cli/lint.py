"""lint: the security rules run over the manifests, offline, in every format a reviewer or a CI reads."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.common import colour, load, manifest_options
from reconciler.errors import ExitCode
from reconciler.findings import SEVERITIES, counts
from reconciler.textsafe import json_visible, visible

if TYPE_CHECKING:
    from reconciler.findings import Finding
    from reconciler.workflow import Review

FAIL_CHOICES = (*SEVERITIES, "never")
FAIL_ON_OPTION = click.option(
    "--fail-on",
    type=click.Choice(FAIL_CHOICES),
    help="Exit 4 when a finding the policy does not accept is at or above this severity "
    "[default: the Project policy's failOn, else high for lint and never for plan]. "
    "plan counts only the findings its changes bring (new).",
)
FORMATS = ("text", "json", "markdown", "sarif", "github")


@click.command("lint")
@manifest_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for policy tools (schemas/lint.schema.json), markdown for PR comments, "
    "sarif for GitHub code scanning (SARIF 2.1.0), github for workflow annotations at FILE:LINE:COL.",
)
@FAIL_ON_OPTION
@click.option(
    "--list-rules",
    is_flag=True,
    help="List the rules (built-in and from plugins) instead: text, json, or markdown (the README's table).",
)
def lint_command(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    output_format: str,
    fail_on: str | None,
    list_rules: bool,
) -> int:
    """Check the manifests against the security rules, offline.

    Each MCP server and client is judged as the manifests state it: dynamic
    registration, CIMD domain policies, consent, callback URLs, audiences,
    token lifetimes, client scopes (the catalogue: README, "Security checks").
    The Project's policy turns rules off, changes severities and parameters,
    and accepts findings with a reason. Exit 4 when a finding reaches --fail-on.
    """
    from reconciler.workflow import lint_manifest  # noqa: PLC0415 - the rules and their plugins, late

    if list_rules:
        click.echo(_catalogue(output_format), nl=False)
        return ExitCode.OK
    manifest = load(paths, var_files=var_files)
    review = lint_manifest(manifest, fail_on=fail_on)
    failing = review.failing()
    render: dict[str, Callable[[], str]] = {
        "text": lambda: _text(review.findings),
        "json": lambda: _json(manifest.project.projectId, review, failed=bool(failing)),
        "markdown": lambda: _markdown(review.findings, manifest.project.projectId),
        "sarif": lambda: _sarif(review),
        "github": lambda: _annotations(review),
    }
    click.echo(render[output_format](), nl=False)
    if failing:
        threshold = review.fail_on
        click.echo(
            f"error: {len(failing)} security finding{'s' if len(failing) != 1 else ''} at or above "
            f"{threshold} (--fail-on, or the Project policy's failOn)",
            err=True,
        )
        return ExitCode.POLICY
    return ExitCode.OK


def _text(findings: Sequence[Finding]) -> str:
    from reconciler.render.findings import render_findings_text  # noqa: PLC0415

    return render_findings_text(findings, colour=colour())


def _json(project: str, review: Review, *, failed: bool) -> str:
    body = {
        "format_version": 1,
        "project": project,
        "rules": list(review.rules),
        "failOn": review.fail_on,
        "failed": failed,
        "counts": counts(review.findings),
        "findings": [finding.to_json() for finding in review.findings],
    }
    return json_visible(json.dumps(body, indent=2, ensure_ascii=False)) + "\n"


def _markdown(findings: Sequence[Finding], project: str) -> str:
    from reconciler.render.markdown import render_findings_markdown  # noqa: PLC0415

    return render_findings_markdown(findings, project_id=project)


def _sarif(review: Review) -> str:
    from reconciler.cli.main import tool_version  # noqa: PLC0415
    from reconciler.render.sarif import to_sarif  # noqa: PLC0415
    from reconciler.rule_plugins import all_rules  # noqa: PLC0415

    ran = [rule for rule in all_rules() if rule.id in review.rules]
    log = to_sarif(review.findings, ran, tool_version=tool_version(), base=repository_root())
    return json_visible(json.dumps(log, indent=2, ensure_ascii=False)) + "\n"


def _annotations(review: Review) -> str:
    from reconciler.render.annotations import finding_annotations  # noqa: PLC0415

    lines = finding_annotations(review.findings)
    return "".join(visible(line) + "\n" for line in lines)


def _catalogue(output_format: str) -> str:
    from reconciler.rule_plugins import all_rules  # noqa: PLC0415
    from reconciler.rules import catalogue_markdown  # noqa: PLC0415

    rules = all_rules()
    if output_format == "markdown":
        return catalogue_markdown(rules)
    if output_format == "json":
        listed = [
            {
                "id": rule.id,
                "name": rule.name,
                "severity": rule.severity,
                "appliesTo": rule.applies_to,
                "summary": rule.summary,
                "rationale": rule.rationale,
                "fix": rule.fix,
                "references": [{"title": ref.title, "url": ref.url} for ref in rule.references],
                "params": {name: p.default for name, p in rule.params.items()},
            }
            for rule in rules
        ]
        return json_visible(json.dumps(listed, indent=2, ensure_ascii=False)) + "\n"
    lines = [f"{r.id} {r.severity:<8} {r.applies_to:<6} {r.name}: {r.summary}" for r in rules]
    return "".join(visible(line) + "\n" for line in lines)


def repository_root() -> Path:
    """What code scanning resolves file paths against: the checkout (``GITHUB_WORKSPACE`` in Actions),
    else the repository around the working directory (the nearest folder with ``.git``), else it."""
    workspace = os.environ.get("GITHUB_WORKSPACE", "")
    if workspace:
        return Path(workspace)
    here = Path.cwd()
    return next((folder for folder in (here, *here.parents) if (folder / ".git").exists()), here)
