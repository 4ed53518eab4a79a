"""The ``mcp-reconciler`` command line: the only module that prints or exits.

Click runs with ``standalone_mode=False`` so that every outcome, click's own usage errors included,
passes through :func:`main`, which maps it to the exit codes of ``reconciler.errors.ExitCode``
(click's usage exit 2 becomes 1, since 2 means "changes present").
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.errors import (
    ApplyError,
    ExitCode,
    ManifestError,
    PlanError,
    ReconcilerError,
    SecretDeliveryError,
    StalePlanError,
    UsageError,
)
from reconciler.ghactions import append_summary, write_outputs
from reconciler.journal import DEFAULT_JOURNAL
from reconciler.manifest import load_manifest, read_var_file
from reconciler.models import Manifest
from reconciler.plan import ApplyResult, Change, Plan
from reconciler.planner import PlanOptions, Target
from reconciler.render.github import error_annotations, in_github_actions
from reconciler.render.markdown import render_drift_markdown, render_plan_markdown
from reconciler.render.text import apply_summary, render_drift_text, render_plan_text
from reconciler.secret import Secret
from reconciler.throttle import DEFAULT_CONCURRENCY, DEFAULT_RATE, ThrottleSettings, parse_rate
from reconciler.workflow import (
    ApplySettings,
    Connection,
    apply_fresh,
    apply_saved,
    check_secrets,
    check_sinks,
    drift_as_json,
    drift_project,
    load_saved_plan,
    plan_as_json,
    plan_project,
    save_plan,
)

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


def api_options(func: F) -> F:
    """Throughput controls shared by every command that calls the API."""
    func = click.option(
        "--rate-limit",
        metavar="N/SECONDS",
        default=f"{DEFAULT_RATE[0]}/{DEFAULT_RATE[1]:g}",
        show_default=True,
        envvar="MCP_RECONCILER_RATE_LIMIT",
        help="At most N API requests in any SECONDS, for the whole run [env: MCP_RECONCILER_RATE_LIMIT].",
    )(func)
    return click.option(
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        show_default=True,
        type=click.IntRange(1, 64),
        envvar="MCP_RECONCILER_CONCURRENCY",
        help="At most this many API requests at once [env: MCP_RECONCILER_CONCURRENCY].",
    )(func)


def connection(concurrency: int, rate_limit: str) -> Connection:
    try:
        requests, seconds = parse_rate(rate_limit)
    except ValueError as exc:
        raise UsageError(f"--rate-limit: {exc}") from None
    settings = ThrottleSettings(concurrency=concurrency, requests=requests, per_seconds=seconds)
    return Connection(environ=dict(os.environ), throttle=settings, fetch_progress=_fetch_progress())


def _fetch_progress() -> Callable[[int, int], None] | None:
    """On a terminal, a line counting the servers whose clients have been read."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\rReading the live project: {done}/{total} servers{end}", err=True, nl=False)

    return show


FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for policy tools (schemas/plan.schema.json), markdown for PR comments.",
)
DETAILED_EXITCODE = click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0: none, 1: error)."
)


TARGET_OPTION = click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="server:NAME|client:SERVER/NAME",
    help="Only these objects (a server includes its clients). Repeatable; for emergencies.",
)
JOURNAL_OPTION = click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_JOURNAL,
    show_default=True,
    envvar="MCP_RECONCILER_JOURNAL",
    help="JSON-lines record of every step (never secrets); also how a later run finishes open deliveries.",
)


def load(paths: Sequence[str], var_files: Sequence[str]) -> Manifest:
    values: dict[str, str] = {}
    for var_file in var_files:
        values.update(read_var_file(var_file))
    return load_manifest(paths or DEFAULT_PATHS, var_values=values)


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
    if output_format == "json":
        click.echo(drift_as_json(report), nl=False)
    elif output_format == "markdown":
        click.echo(render_drift_markdown(report), nl=False)
    else:
        click.echo(render_drift_text(report, colour=_colour()), nl=False)
    return ExitCode.CHANGES if detailed_exitcode and report.has_drift else ExitCode.OK


def emit(plan: Plan, output_format: str) -> None:
    if output_format == "json":
        click.echo(plan_as_json(plan), nl=False)
    elif output_format == "markdown":
        click.echo(render_plan_markdown(plan), nl=False)
    else:
        click.echo(render_plan_text(plan, colour=_colour()), nl=False)


@contextmanager
def group(title: str) -> Iterator[None]:
    """Fold what happens inside into one collapsible group of the Actions log."""
    folding = in_github_actions(os.environ)
    if folding:
        click.echo(f"::group::{title}")
    try:
        yield
    finally:
        if folding:
            click.echo("::endgroup::")


def publish(markdown: str, outputs: Mapping[str, int | bool]) -> None:
    """Inside GitHub Actions: the markdown to the job summary, the counts to the step outputs."""
    if in_github_actions(os.environ):
        append_summary(os.environ, markdown)
        write_outputs(os.environ, outputs)


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


@cli.command("apply")
@manifest_options
@api_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking (required when not on a terminal).")
@click.option(
    "--prune/--no-prune", default=None, help="Delete owned objects not in the manifests [Project: prune]."
)
@click.option("--allow-deletes", type=click.IntRange(min=0), help="Accept up to N deletes, over maxDeletes.")
@TARGET_OPTION
@JOURNAL_OPTION
def apply_command(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    auto_approve: bool,
    prune: bool | None,
    allow_deletes: int | None,
    targets: tuple[str, ...],
    journal: Path,
) -> int:
    """Make the Descope project match the manifests, or apply a saved plan.

    \b
    mcp-reconciler apply [PATHS...]   plan, show it, ask, then apply
    mcp-reconciler apply plan.json    apply exactly a saved plan (no prompt),
                                      refused if the project changed since

    New and rotated client secrets go to their sinks and are never printed.
    """
    link = connection(concurrency, rate_limit)
    settings = ApplySettings(journal=journal, mask=_masker(), progress=ProgressLine())
    if len(paths) == 1 and paths[0].endswith(".json") and Path(paths[0]).is_file():
        if targets or prune is not None or allow_deletes is not None or var_files:
            plan_only = "--target, --prune, --allow-deletes and --var-file"
            raise UsageError(f"a saved plan is applied as it is: {plan_only} belong to plan")
        saved = load_saved_plan(Path(paths[0]))
        click.echo(render_plan_text(saved, colour=_colour()), nl=False)
        result = asyncio.run(apply_saved(saved, link, settings)) if saved.changes else None
        return _finish(result)
    manifest = load(paths, var_files)
    options = PlanOptions(
        prune=prune, allow_deletes=allow_deletes, targets=tuple(Target.parse(t) for t in targets)
    )
    plan, result = asyncio.run(apply_fresh(manifest, link, options, settings, _confirmer(auto_approve)))
    if not plan.changes:
        click.echo(render_plan_text(plan, colour=_colour()), nl=False)
    elif result is None:
        click.echo("Apply cancelled; nothing was changed.", err=True)
        return ExitCode.ERROR
    return _finish(result)


def _confirmer(auto_approve: bool) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        click.echo(render_plan_text(plan, colour=_colour()), nl=False)
        if auto_approve:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "apply needs --auto-approve when not run from a terminal (or apply a saved plan)"
            )
        answer: str = click.prompt(
            "\nApply these changes? Only 'yes' will be accepted", default="", show_default=False
        )
        return answer == "yes"

    return confirm


def _masker() -> Callable[[Secret], None] | None:
    if not in_github_actions(os.environ):
        return None

    def mask(secret: Secret) -> None:
        # The runner hides every later occurrence of a value announced this way.
        click.echo(f"::add-mask::{secret.reveal()}")

    return mask


def _finish(result: ApplyResult | None) -> int:
    if result is None:
        return ExitCode.OK
    for change, reason in result.failed:
        click.echo(f"failed: {change.action.value} {change.address}: {reason}", err=True)
    for change, reason in result.skipped:
        click.echo(f"skipped: {change.action.value} {change.address}: {reason}", err=True)
    for address, reason in result.undelivered:
        click.echo(f"secret not delivered: {address}: {reason}", err=True)
    click.echo(apply_summary(result))
    if result.undelivered:
        raise SecretDeliveryError(
            f"{len(result.undelivered)} secret(s) did not reach their sink; the next apply (or "
            "'mcp-reconciler secrets check --fix') delivers them again"
        )
    if result.failed or result.skipped:
        raise ApplyError(f"{len(result.failed)} change(s) failed and {len(result.skipped)} were skipped")
    return ExitCode.OK


class ProgressLine:
    """Progress for long runs: one updating line on a terminal, a line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.total = self.count = self.failures = 0
        self.started = 0.0

    def start(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        if in_github_actions(os.environ):
            click.echo(f"::group::Applying {total} changes")

    def done(self, change: Change, error: str | None) -> None:
        self.count += 1
        self.failures += error is not None
        if not self.tty:
            status = f"FAILED ({error})" if error else "done"
            click.echo(
                f"[{self.count}/{self.total}] {change.action.value} {change.address}: {status}", err=True
            )
            return
        rate = self.count / max(time.monotonic() - self.started, 1e-6)
        line = f"\r{self.count}/{self.total} changes, {self.failures} failed, {rate:.1f}/s\x1b[K"
        click.echo(line, err=True, nl=False)

    def finish(self) -> None:
        if self.tty and self.total:
            click.echo("", err=True)
        if in_github_actions(os.environ):
            click.echo("::endgroup::")


@cli.group("secrets")
def secrets_group() -> None:
    """Check that every managed client's secret is in its sink."""


@secrets_group.command("check")
@manifest_options
@api_options
@click.option(
    "--fix", is_flag=True, help="Deliver the current secret (read from Descope) where it is missing."
)
@JOURNAL_OPTION
def secrets_check(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    fix: bool,
    journal: Path,
) -> int:
    """Verify each managed client's current secret against its sink (exit 3 if any is not there)."""
    manifest = load(paths, var_files)
    statuses = asyncio.run(
        check_secrets(manifest, connection(concurrency, rate_limit), fix=fix, journal=journal)
    )
    for status in statuses:
        detail = f": {status.detail}" if status.detail else ""
        click.echo(f"{status.state:>10}  {status.address} -> sink {status.sink}{detail}")
    bad = [s for s in statuses if not s.ok and s.state != "absent"]
    click.echo(f"{len(statuses) - len(bad)} of {len(statuses)} secrets are in their sinks or not issued yet.")
    if bad:
        hint = "" if fix else "; run with --fix to deliver them"
        raise SecretDeliveryError(f"{len(bad)} secret(s) are not in their sinks{hint}")
    return ExitCode.OK


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--project-id",
    envvar="DESCOPE_PROJECT_ID",
    default="P2MCPRECONCILERDEMO",
    show_default=True,
    help="The project ID it answers for [env: DESCOPE_PROJECT_ID].",
)
@click.option(
    "--management-key",
    envvar="DESCOPE_MANAGEMENT_KEY",
    help="The management key it accepts; prefer the environment variable [env: DESCOPE_MANAGEMENT_KEY].",
)
@click.option(
    "--state-file", type=click.Path(dir_okay=False, path_type=Path), help="Keep state in this JSON file."
)
@click.option("--latency-ms", default=0.0, type=click.FloatRange(min=0), help="Delay before every answer.")
@click.option("--rate-limit", metavar="N/SECONDS", help="Answer 429 past N requests in any SECONDS.")
@click.option(
    "--fault-rate", default=0.0, type=click.FloatRange(0, 1), help="Chance of a 5xx before handling."
)
@click.option(
    "--fault-after-commit-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Chance that a mutation happens and then fails (5xx or a dropped connection).",
)
@click.option("--seed", type=int, help="Seed for repeatable faults.")
@click.option(
    "--scopes-format", type=click.Choice(["list", "categorized"]), default="list", show_default=True
)
def emulator(**options: Any) -> int:
    """Run the local Descope emulator (MCP server management API) until interrupted.

    Point mcp-reconciler at it with DESCOPE_BASE_URL=http://HOST:PORT and the same
    DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY.
    """
    from reconciler.emulator import EmulatorConfig, serve  # noqa: PLC0415 - load the server stack only here

    if not options["management_key"]:
        raise UsageError("set DESCOPE_MANAGEMENT_KEY (or --management-key): the key the emulator will accept")
    try:
        rate = parse_rate(options["rate_limit"]) if options["rate_limit"] else None
        config = EmulatorConfig(
            project_id=options["project_id"],
            management_key=options["management_key"],
            state_file=options["state_file"],
            latency_ms=options["latency_ms"],
            rate_limit=rate,
            fault_rate=options["fault_rate"],
            fault_after_commit_rate=options["fault_after_commit_rate"],
            seed=options["seed"],
            scopes_format=options["scopes_format"],
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    host, port = options["host"], options["port"]
    click.echo(
        f"Descope emulator for project {config.project_id} on http://{host}:{port}"
        + (f", state in {config.state_file}" if config.state_file else ", state in memory only"),
        err=True,
    )
    click.echo(f"Use it with: export DESCOPE_BASE_URL=http://{host}:{port}", err=True)
    try:
        serve(config, host=host, port=port)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down cleanly
        click.echo("Emulator stopped.", err=True)
        return ExitCode.INTERRUPTED
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
