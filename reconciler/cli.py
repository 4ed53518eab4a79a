"""The ``mcp-reconciler`` command line: the only module that prints or exits.

Click runs with ``standalone_mode=False`` so that every outcome, click's own usage errors included,
passes through :func:`main`, which maps it to the exit codes of ``reconciler.errors.ExitCode``
(click's usage exit 2 becomes 1, since 2 means "changes present").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from reconciler.errors import ExitCode, ManifestError, ReconcilerError
from reconciler.manifest import Manifest, load_manifest, read_var_file
from reconciler.render.github import error_annotations, in_github_actions

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PATHS = ("manifests",)


def manifest_options(func: F) -> F:
    """The options every command that reads manifests shares."""
    func = click.option(
        "--var-file",
        "var_files",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="YAML file of NAME: value pairs for ${NAME} references (repeatable; the environment wins).",
    )(func)
    return click.argument("paths", nargs=-1, type=click.Path())(func)


def load(paths: Sequence[str], var_files: Sequence[str]) -> Manifest:
    values: dict[str, str] = {}
    for var_file in var_files:
        values.update(read_var_file(var_file))
    return load_manifest(paths or DEFAULT_PATHS, var_values=values)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcp-reconciler", prog_name="mcp-reconciler")
def cli() -> None:
    """Reconcile a Descope project's MCP Servers and their OAuth clients to YAML manifests.

    \b
    Exit codes: 0 success (for plan/drift: no changes), 1 error, 2 changes or drift
    present (with --detailed-exitcode), 3 a secret was not delivered to its sink.
    """


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
        f"Manifests are valid: {len(manifest.servers)} server{_s(len(manifest.servers))}, "
        f"{clients} client{_s(clients)}, project {manifest.project.projectId}."
    )
    return ExitCode.OK


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def report(error: ReconcilerError) -> None:
    """Print an error for people (stderr) and, inside GitHub Actions, as annotations (stdout)."""
    if isinstance(error, ManifestError):
        for problem in error.problems:
            click.echo(str(problem), err=True)
        if in_github_actions(os.environ):
            for line in error_annotations(error.problems):
                click.echo(line)
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
