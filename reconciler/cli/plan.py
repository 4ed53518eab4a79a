"""validate, plan and drift: the commands that only read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from reconciler.cli.common import (
    DETAILED_EXITCODE,
    FORMAT_OPTION,
    TARGET_OPTION,
    api_options,
    connection,
    emit,
    group,
    load,
    manifest_options,
    plural,
    publish,
)
from reconciler.cli.main import cli
from reconciler.errors import ExitCode
from reconciler.planner import PlanOptions, Target
from reconciler.render.markdown import render_drift_markdown, render_plan_markdown
from reconciler.workflow import (
    check_sinks,
    drift_project,
    plan_project,
    save_plan,
)


@cli.command()
@manifest_options
def validate(paths: tuple[str, ...], var_files: tuple[str, ...]) -> int:
    """Check manifests offline: YAML, schemas, names, scopes and sinks.

    PATHS are files or folders (searched at any depth for *.yaml and *.yml);
    the default is ./manifests. Every problem is reported as FILE:LINE:COL.
    """
    manifest = load(paths, var_files)
    clients = sum(len(server.clients) for server in manifest.servers)
    click.echo(
        f"Manifests are valid: {len(manifest.servers)} server{plural(len(manifest.servers))}, "
        f"{clients} client{plural(clients)}, project {manifest.project.projectId}."
    )
    return ExitCode.OK


@cli.command("plan")
@manifest_options
@api_options
@FORMAT_OPTION
@DETAILED_EXITCODE
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan here, for apply.")
@click.option(
    "--prune/--no-prune", default=None, help="Delete owned objects not in the manifests [Project: prune]."
)
@click.option("--allow-deletes", type=click.IntRange(min=0), help="Accept up to N deletes, over maxDeletes.")
@TARGET_OPTION
def plan_command(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    output_format: str,
    detailed_exitcode: bool,
    out: Path | None,
    prune: bool | None,
    allow_deletes: int | None,
    targets: tuple[str, ...],
) -> int:
    """Show what apply would change in the Descope project, field by field.

    Reads DESCOPE_MANAGEMENT_KEY (and DESCOPE_BASE_URL) from the environment; the
    project is the Project manifest's projectId.
    """
    manifest = load(paths, var_files)
    options = PlanOptions(
        prune=prune, allow_deletes=allow_deletes, targets=tuple(Target.parse(t) for t in targets)
    )
    link = connection(concurrency, rate_limit)
    with group("Reading the live project and planning"):
        plan = asyncio.run(plan_project(manifest, link, options))
    publish(render_plan_markdown(plan), {"has-changes": plan.has_changes, **plan.summary})
    for problem in check_sinks(plan, link.environ):
        click.echo(
            f"warning: {problem} (apply will not create or rotate clients whose secrets go there)", err=True
        )
    if out is not None:
        save_plan(plan, out)
    emit(plan, output_format)
    if out is not None:
        click.echo(f"Saved the plan to {out}; apply exactly it with: mcp-reconciler apply {out}", err=True)
    return ExitCode.CHANGES if detailed_exitcode and plan.has_changes else ExitCode.OK


@cli.command("drift")
@manifest_options
@api_options
@FORMAT_OPTION
@DETAILED_EXITCODE
def drift_command(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    output_format: str,
    detailed_exitcode: bool,
) -> int:
    """Compare the live project with the manifests: changed, missing, orphaned, unmanaged.

    For a scheduled job: with --detailed-exitcode it exits 2 when anything drifted.
    """
    manifest = load(paths, var_files)
    with group("Reading the live project"):
        report = asyncio.run(drift_project(manifest, connection(concurrency, rate_limit)))
    publish(render_drift_markdown(report), {"has-changes": report.has_drift, **report.summary})
    emit(report, output_format)
    return ExitCode.CHANGES if detailed_exitcode and report.has_drift else ExitCode.OK
