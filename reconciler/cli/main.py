"""The ``mcp-reconciler`` command group and its single exit: every outcome becomes an exit code here.

Click runs with ``standalone_mode=False`` so that every outcome, click's own usage errors included,
passes through :func:`run`, which maps it to the exit codes of ``reconciler.errors.ExitCode``
(click's usage exit 2 becomes 1, since 2 means "changes present").

The group loads each command's module only when that command runs (:class:`LazyGroup`): ``--help``
and a command that only reads files start without the HTTP client, the emulator's web server or the
planner. This module imports nothing heavy itself."""

from __future__ import annotations

import difflib
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from reconciler.errors import (
    ExitCode,
    ManifestError,
    PlanError,
    ReconcilerError,
    SavedPlanError,
    StalePlanError,
)
from reconciler.render.github import error_annotations, in_github_actions
from reconciler.textsafe import visible
from reconciler.variables import MIN_CREDENTIAL_LENGTH, is_credential_name

# Every command: where it is defined ("module:attribute"), and the first paragraph of its help, which
# the command list of ``--help`` shortens as click would, without importing the command's module.
# tests/test_startup.py checks that each entry names its command and quotes its help.
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": (
        "reconciler.cli.apply:apply_command",
        "Make the Descope project match the manifests, or apply a saved plan.",
    ),
    "demo": (
        "reconciler.cli.demo:demo",
        "Try the whole workflow on your machine: validate, plan, apply, a hand-made change, drift, plan.",
    ),
    "drift": (
        "reconciler.cli.plan:drift_command",
        "Compare the live project with the manifests: changed, missing, orphaned, unmanaged.",
    ),
    "emulator": (
        "reconciler.cli.emulator:emulator",
        "Run the local Descope emulator (MCP server and Resource management API) until interrupted.",
    ),
    "emulator-console": (
        "reconciler.cli.console:console_group",
        "Change a running emulator by hand, as someone would in Descope's console, to rehearse drift.",
    ),
    "export": (
        "reconciler.cli.export:export_command",
        "Write manifests from the live project: one file per server, clients inline.",
    ),
    "lint": (
        "reconciler.cli.lint:lint_command",
        "Check the manifests against the security rules, offline.",
    ),
    "plan": (
        "reconciler.cli.plan:plan_command",
        "Show what apply would change in the Descope project, field by field.",
    ),
    "schemas": (
        "reconciler.cli.schemas:schemas_command",
        "Write the JSON Schemas of the manifests and of the JSON output, for editors and CI.",
    ),
    "secrets": (
        "reconciler.cli.apply:secrets_group",
        "Check that every managed client's secret is in its sink.",
    ),
    "show": (
        "reconciler.cli.show:show_command",
        "Show a plan saved by plan --out, offline: it does not contact Descope.",
    ),
    "validate": (
        "reconciler.cli.validate:validate",
        "Check manifests offline: YAML, schemas, names, scopes and sinks.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands (``COMMANDS``) are imported when one is run or asked for its help.

    Listing them (``--help``) imports none: each one's short help comes from ``COMMANDS``.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name][0].partition(":")
            # The import statement's own function, so that python -X importtime reports this import.
            command = getattr(__import__(module, fromlist=[attribute]), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests close names from the commands it has loaded, here none: suggest from all.
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name and name not in known and not name.startswith("-") and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, known)
            hint = ""
            if len(close) == 1:
                hint = f" Did you mean {close[0]!r}?"
            elif close:
                hint = f" (Possible commands: {', '.join(sorted(close))})"
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, each shortened from ``COMMANDS`` as click shortens a loaded one's help."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None and loaded.hidden:
                continue
            stand_in = loaded or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcp-reconciler", prog_name="mcp-reconciler")
@click.option(
    "-v", "--verbose", count=True, help="Log steps (-v), API calls (-vv), libraries (-vvv); never secrets."
)
def cli(verbose: int) -> None:
    """Reconcile a Descope project's MCP Servers and their OAuth clients to YAML manifests.

    \b
    Exit codes: 0 success (for plan/drift: no changes), 1 error, 2 changes or drift
    present (with --detailed-exitcode), 3 a secret was not delivered to its sink, 4 a
    security finding at or above --fail-on (lint; plan: one the change brings).
    """
    # Log messages quote names and API answers: the handler shows them made visible. Without -v it
    # prints what Python's last-resort handler would (warnings and worse, the message alone), and the
    # long waits a person should hear about (WAIT_LOGGER). On a terminal each line first clears a
    # progress line being drawn there, which its next update draws again.
    handler = logging.StreamHandler(sys.stderr)
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""
    if verbose:
        # -v: what the reconciler does; -vv: every API call; -vvv: the libraries' own debug logs too.
        root = logging.DEBUG if verbose > 2 else logging.WARNING
        handler.setFormatter(VisibleFormatter(clear + "%(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(handlers=[handler], level=root)
        logging.getLogger("reconciler").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        handler.setFormatter(VisibleFormatter(clear + "%(message)s"))
        handler.addFilter(_warnings_and_waits)  # loggers set lower (a sink's INFO) stay quiet
        logging.basicConfig(handlers=[handler], level=logging.WARNING)
    logging.getLogger(WAIT_LOGGER).setLevel(logging.INFO)


# reconciler.throttle's wait_log (named here, so that the group imports no asyncio): waits of a few
# seconds or more (rate limit, Retry-After, back-off, a slow answer, the project lock), said at INFO
# and shown at every verbosity, on stderr.
WAIT_LOGGER = "reconciler.wait"


def _warnings_and_waits(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name == WAIT_LOGGER


class VisibleFormatter(logging.Formatter):
    """Log lines safe for a terminal: a message quotes names and answers from the API, so its control
    and bidi characters are shown escaped, a line break included (a message cannot forge the next
    line). A traceback keeps the line breaks of its own layout; the exception messages in it are data
    and are escaped like messages."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy, so other handlers see the record as it was, and the traceback is formatted here
        # (by formatException below) rather than taken from a raw text another handler cached.
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args, safe.exc_text = visible(record.getMessage()), None, None
        return super().format(safe)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's own name
        if ei[1] is None:
            return _lines_visible(super().formatException(ei))
        chunks = traceback.TracebackException.from_exception(ei[1]).format()
        return "".join(_traceback_chunk(chunk) for chunk in chunks).removesuffix("\n")

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's own name
        return _lines_visible(super().formatStack(stack_info))


def _traceback_chunk(chunk: str) -> str:
    """The header, frames (indented) and chain messages (after a blank line) keep their lines; an
    exception's own line, message and notes included, becomes one line."""
    if chunk.startswith(("Traceback ", "  ", "\n")):
        return _lines_visible(chunk)
    return visible(chunk.removesuffix("\n")) + "\n"


def _lines_visible(text: str) -> str:
    return "\n".join(visible(line) for line in text.split("\n"))


def report(error: ReconcilerError) -> None:
    """Print an error for people (stderr) and, inside GitHub Actions, as annotations (stdout).

    Messages quote names from manifests and the API, and API error bodies: every line is made
    visible (``reconciler.textsafe``), so none can carry a terminal control sequence or forge a line.
    """
    if isinstance(error, ManifestError):
        for problem in error.problems:
            click.echo(visible(str(problem)), err=True)
        if in_github_actions(os.environ):
            for line in error_annotations(error.problems):
                click.echo(visible(line))
    if isinstance(error, PlanError):
        for reason in error.reasons:
            click.echo(f"  {visible(reason)}", err=True)
    if isinstance(error, StalePlanError):
        for moved in error.moved:
            click.echo(f"  {visible(moved)}", err=True)
    if isinstance(error, SavedPlanError):
        for detail in error.details:
            click.echo(f"  {visible(detail)}", err=True)
    click.echo(f"error: {visible(str(error))}", err=True)


def preload(argv: Sequence[str]) -> None:
    """Import the module of the command ``argv`` names (its first word that is not an option: the
    group's options take no value), as running it would; nothing for ``--help`` or an unknown word.

    ``reconciler.entry`` calls this while a Ctrl+C still ends start-up at once and quietly: an
    interrupt that lands inside the import machinery's own callbacks is otherwise printed as an
    ignored exception, with a traceback, and the import goes on.
    """
    name = next((word for word in argv if not word.startswith("-")), None)
    if name in COMMANDS:
        cli.get_command(click.Context(cli), name)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m reconciler``."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - one return per way a run ends
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
    except OSError as exc:  # the file system said no: a path, a permission, a full disk; not a bug
        path = f": {exc.filename}" if exc.filename else ""
        click.echo(visible(f"error: {exc.strerror or exc}{path}"), err=True)
        return ExitCode.ERROR
    except Exception as exc:  # a bug: say so plainly, and keep the traceback for whoever fixes it
        if os.environ.get("MCP_RECONCILER_DEBUG"):
            raise
        where = write_crash_log(os.environ)
        kept = f"the traceback is in {where}" if where else "set MCP_RECONCILER_DEBUG=1 for a traceback"
        message = blank_credentials(f"{type(exc).__name__}: {exc}", os.environ)
        click.echo(f"internal error: {visible(message)} ({visible(kept)})", err=True)
        return ExitCode.ERROR
    return int(result) if isinstance(result, int) else ExitCode.OK


def write_crash_log(environ: Mapping[str, str]) -> Path | None:
    """Write the current exception's traceback in the state folder (mode 0600); None if that fails.

    A crash may come before the manifests are read, so the folder is the one the environment names
    (``MCP_RECONCILER_STATE_DIR``, else the folder of ``MCP_RECONCILER_JOURNAL``), else a
    ``.mcp-reconciler`` that already exists in the working directory (none is created there: the
    state folder lives beside the Project manifest), else the temporary folder.

    Exceptions carry no secret by construction (a ``Secret`` prints as "(sensitive)"), but a crash is
    by definition the unforeseen case: the values of credentials in the environment are blanked too.
    """
    import tempfile  # noqa: PLC0415 - only a crash needs these

    from reconciler.journal import (  # noqa: PLC0415
        JOURNAL_VARIABLE,
        STATE_DIR_NAME,
        STATE_DIR_VARIABLE,
        make_folder,
    )

    state, journal = environ.get(STATE_DIR_VARIABLE), environ.get(JOURNAL_VARIABLE)
    folder = Path(state) if state else Path(journal).parent if journal else Path(STATE_DIR_NAME)
    if not (state or journal or folder.is_dir()):
        folder = Path(tempfile.gettempdir())
    folder = Path(os.path.abspath(folder))  # the message names it absolute
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = (
        f"mcp-reconciler {tool_version()} on Python {sys.version.split()[0]}\n"
        f"command: {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}"
    )
    text = blank_credentials(text, environ)
    for base in (folder, Path(tempfile.gettempdir())):
        path = base / f"mcp-reconciler-crash-{stamp}-{os.getpid()}.log"
        try:
            make_folder(base)  # 0700; a state folder created here gets its .gitignore
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8", errors="replace") as stream:
                stream.write(text)
        except OSError:
            continue
        return path
    return None


def blank_credentials(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with the value of every credential in ``environ`` replaced by the variable's name."""
    for name, value in environ.items():
        if is_credential_name(name) and len(value) >= MIN_CREDENTIAL_LENGTH:
            text = text.replace(value, f"<{name}>")
    return text


def tool_version() -> str:
    """This installation's version, for crash logs and SARIF."""
    from importlib import metadata  # noqa: PLC0415 - slow to import, and only a few need it

    try:
        return metadata.version("mcp-reconciler")
    except metadata.PackageNotFoundError:
        return "(not installed)"
