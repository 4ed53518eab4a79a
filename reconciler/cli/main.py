"""The ``mcp-reconciler`` command group and its single exit: every outcome becomes an exit code here.

Click runs with ``standalone_mode=False`` so that every outcome, click's own usage errors included,
passes through :func:`run`, which maps it to the exit codes of ``reconciler.errors.ExitCode``
(click's usage exit 2 becomes 1, since 2 means "changes present")."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import click

from reconciler.errors import (
    ExitCode,
    ManifestError,
    PlanError,
    ReconcilerError,
    StalePlanError,
)
from reconciler.render.github import error_annotations, in_github_actions


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcp-reconciler", prog_name="mcp-reconciler")
@click.option(
    "-v", "--verbose", count=True, help="Log steps (-v), API calls (-vv), libraries (-vvv); never secrets."
)
def cli(verbose: int) -> None:
    """Reconcile a Descope project's MCP Servers and their OAuth clients to YAML manifests.

    \b
    Exit codes: 0 success (for plan/drift: no changes), 1 error, 2 changes or drift
    present (with --detailed-exitcode), 3 a secret was not delivered to its sink.
    """
    if verbose:
        # -v: what the reconciler does; -vv: every API call; -vvv: the libraries' own debug logs too.
        root = logging.DEBUG if verbose > 2 else logging.WARNING
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, level=root)
        logging.getLogger("reconciler").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def report(error: ReconcilerError) -> None:
    """Print an error for people (stderr) and, inside GitHub Actions, as annotations (stdout)."""
    if isinstance(error, ManifestError):
        for problem in error.problems:
            click.echo(str(problem), err=True)
        if in_github_actions(os.environ):
            for line in error_annotations(error.problems):
                click.echo(line)
    if isinstance(error, PlanError):
        for reason in error.reasons:
            click.echo(f"  {reason}", err=True)
    if isinstance(error, StalePlanError):
        for moved in error.moved:
            click.echo(f"  {moved}", err=True)
    click.echo(f"error: {error}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m reconciler``."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code instead of exiting."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="mcp-reconciler", standalone_mode=False
        )
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.ERROR
    except ReconcilerError as exc:
        report(exc)
        return exc.exit_code
    except Exception as exc:  # a bug: say so plainly instead of dumping a traceback
        if os.environ.get("MCP_RECONCILER_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (set MCP_RECONCILER_DEBUG=1 for a traceback)",
            err=True,
        )
        return ExitCode.ERROR
    return int(result) if isinstance(result, int) else ExitCode.OK
