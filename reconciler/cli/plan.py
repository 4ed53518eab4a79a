"""plan and drift: the commands that read the live project (validate, which reads only files, is apart)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import click

from reconciler.cli.common import (
    DEFAULT_PATHS,
    DETAILED_EXITCODE,
    FORMAT_OPTION,
    TARGET_OPTION,
    api_options,
    connection,
    format_option,
    group,
    load,
    manifest_options,
    plural,
    publish,
)
from reconciler.cli.lint import FAIL_ON_OPTION
from reconciler.cli.output import emit
from reconciler.errors import DeleteBudgetError, ExitCode
from reconciler.kinds import desired_objects
from reconciler.plan_ahead import PlanAhead
from reconciler.planner import PlanOptions, Target
from reconciler.provenance import made_from
from reconciler.render.github import in_github_actions
from reconciler.render.markdown import render_drift_markdown, render_plan_markdown
from reconciler.textsafe import visible
from reconciler.workflow import (
    check_sinks,
    drift_project,
    early_reader,
    live_for_plan,
    plan_against,
    plan_key,
    review_plan,
    save_plan,
)


@click.command("plan")
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
@FAIL_ON_OPTION
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
    fail_on: str | None,
) -> int:
    """Show what apply would change in the Descope project, field by field.

    Reads DESCOPE_MANAGEMENT_KEY (and DESCOPE_BASE_URL) from the environment; the
    project is the Project manifest's projectId.
    """
    options = PlanOptions(
        prune=prune, allow_deletes=allow_deletes, targets=tuple(Target.parse(t) for t in targets)
    )
    link = connection(concurrency, rate_limit)
    with early_reader(link, options) as early:
        manifest = load(paths, var_files=var_files, early=early)
        signing_key = plan_key(link.environ)
        # What needs only the manifests is made while the live project may still be being read.
        recorded = recorded_paths(paths or DEFAULT_PATHS)
        sources = made_from(manifest, options, paths=recorded, var_files=recorded_paths(var_files))
        desired = desired_objects(manifest)
        # Planned and judged as the live project arrives; the installed plugins' rules looked up now.
        ahead = PlanAhead(manifest, options, desired)
        refusal: DeleteBudgetError | None = None
        with group("Reading the live project and planning"):
            live = early.take(manifest.project.projectId, ahead) if early is not None else None
            if live is None:
                live = asyncio.run(live_for_plan(manifest, link, options))
            planning = ahead.planning(live)
            try:
                plan = plan_against(manifest, live, options, desired, planning)
            except DeleteBudgetError as refused:  # shown whole first: it is what the reviewer decides on
                plan, refusal = refused.plan, refused
            judged = ahead.judged_for(live)
            review = review_plan(manifest, live, plan, options, fail_on=fail_on, judged=judged)
    plan = replace(
        plan,
        made_from=sources,
        sink_problems=check_sinks(plan, manifest, link.environ),
        findings=review.findings,
    )
    publish(
        lambda: render_plan_markdown(plan),
        {"has-changes": plan.has_changes, **plan.summary, "changeset": plan.change_set},
    )
    if output_format != "text":  # the text plan shows each beside the changes it stops
        for problem in plan.sink_problems.values():
            why = "apply will not create or rotate clients whose secrets go there"
            click.echo(f"warning: {visible(problem)} ({why})", err=True)  # the problem names its sink
    if refusal is not None:
        emit(plan, output_format)
        raise refusal  # after the plan: the refusal and the --allow-deletes that accepts it come last
    if out is not None:
        save_plan(plan, out, signing_key=signing_key)
    emit(plan, output_format)
    if out is not None:
        signed = ", signed" if signing_key else ""
        click.echo(
            f"Saved the plan to {out} (change set {plan.change_set}{signed}); apply exactly it with: "
            f"mcp-reconciler apply {out}",
            err=True,
        )
    if in_github_actions(os.environ):  # the new findings at their lines of the pull request's files
        from reconciler.render.annotations import finding_annotations  # noqa: PLC0415

        for line in finding_annotations([f for f in review.findings if f.status == "new"]):
            click.echo(visible(line), err=True)  # stderr: stdout may be the JSON plan
    failing = review.failing(new_only=True)
    if failing:
        click.echo(
            f"error: this change brings {len(failing)} security finding{plural(len(failing))} at or above "
            f"{review.fail_on} (--fail-on, or the Project policy's failOn)",
            err=True,
        )
        return ExitCode.POLICY
    return ExitCode.CHANGES if detailed_exitcode and plan.has_changes else ExitCode.OK


@click.command("drift")
@manifest_options
@api_options
@format_option("drift.schema.json")
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
    link = connection(concurrency, rate_limit)
    with early_reader(link) as early:
        manifest = load(paths, var_files=var_files, early=early)
        with group("Reading the live project"):
            live = early.take(manifest.project.projectId) if early is not None else None
            report = asyncio.run(drift_project(manifest, link, live=live))
    publish(lambda: render_drift_markdown(report), {"has-changes": report.has_drift, **report.summary})
    emit(report, output_format)
    return ExitCode.CHANGES if detailed_exitcode and report.has_drift else ExitCode.OK


def recorded_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Paths as a saved plan records them: relative to the working directory where they lie inside it,
    so that apply finds them from the same directory on another machine (a CI job's checkout)."""
    here = Path.cwd().resolve()
    recorded = []
    for given in paths:
        resolved = Path(given).resolve()
        inside = resolved == here or here in resolved.parents
        recorded.append(os.path.relpath(resolved, here) if inside else given)
    return tuple(recorded)
