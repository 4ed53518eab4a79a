"""show: a saved plan, verified as apply verifies it, rendered without contacting Descope."""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.cli.common import DETAILED_EXITCODE, FORMAT_OPTION, from_environment, load, manifest_options
from reconciler.cli.output import emit
from reconciler.errors import ExitCode, UsageError
from reconciler.textsafe import visible
from reconciler.workflow import PLAN_KEY_VARIABLE, load_saved_plan, plan_key, verify_made_from


@click.command("show")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@manifest_options
@FORMAT_OPTION
@DETAILED_EXITCODE
def show_command(
    *,
    plan_file: Path,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    output_format: str,
    detailed_exitcode: bool,
) -> int:
    """Show a plan saved by plan --out, offline: it does not contact Descope.

    \b
    mcp-reconciler show plan.json                 check the file, then show the plan
    mcp-reconciler show plan.json manifests/      also check it was made from these

    The file is checked as apply checks it first: checksum, format version,
    signature (with MCP_RECONCILER_PLAN_KEY set, only plans signed with it are
    shown), schema and change-set digest; a file that fails is not shown (exit 1).
    With PATHS (and --var-file), the plan must have been made from those
    manifests; the paths the plan records are never read. Unlike apply, show
    does not plan again: whether the live project still matches is apply's check.
    Compare the change set on stderr with the one reviewed: an unsigned plan
    can be rewritten, checksum and all, by anyone who can write the file.
    """
    if not paths and from_environment(click.get_current_context(), "var_files"):
        var_files = ()  # MCP_RECONCILER_VAR_FILE is for the manifests, and there are none to check
    if var_files and not paths:
        raise UsageError("--var-file is only read with the manifest PATHS to check the plan against")
    signing_key = plan_key(os.environ)
    plan = load_saved_plan(plan_file, signing_key=signing_key)
    checked = [  # load_saved_plan refuses a signed plan without the key and an unsigned one with it
        "checksum",
        f"change set {plan.change_set}",
        f"signed with {PLAN_KEY_VARIABLE}" if signing_key else "not signed",
    ]
    if paths:
        verify_made_from(plan, load(paths, var_files=var_files))
        sources = " ".join(paths) + "".join(f" --var-file {v}" for v in var_files)
        checked.append(f"made from {sources}")
    emit(plan, output_format)
    click.echo(visible(f"Verified {plan_file}: {', '.join(checked)}"), err=True)
    if not paths:
        click.echo(
            "The manifests were not checked: give their paths after the plan file to check that the plan "
            "was made from them.",
            err=True,
        )
    return ExitCode.CHANGES if detailed_exitcode and plan.has_changes else ExitCode.OK
