"""Options, loading and output helpers shared by the commands.

Importing this module stays cheap (``validate`` uses it): what only the commands that reach the API
need (the workflow, the throttle) is imported where it is used; rendering a plan or a drift report
is in ``reconciler.cli.output``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler.errors import UsageError
from reconciler.ghactions import append_summary, write_outputs
from reconciler.manifest import load_manifest, read_var_file
from reconciler.render.github import in_github_actions
from reconciler.rule_plugins import all_rules

if TYPE_CHECKING:
    from reconciler.models import Manifest
    from reconciler.prefetch import Prefetch
    from reconciler.workflow import Connection

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PATHS = ("manifests",)


VAR_FILE_VARIABLE = "MCP_RECONCILER_VAR_FILE"


def manifest_options(func: F) -> F:
    """The options every command that reads manifests shares."""
    func = click.option(
        "--var-file",
        "var_files",
        multiple=True,
        type=click.Path(dir_okay=False),
        envvar=VAR_FILE_VARIABLE,  # several files separated by os.pathsep, as in PATH (click.Path splits)
        callback=_without_empty_entries,
        help="YAML file of NAME: value pairs for ${NAME} references (repeatable; MCP_VAR_NAME in the "
        f"environment wins) [env: {VAR_FILE_VARIABLE}, files separated by '{os.pathsep}'; --var-file "
        "replaces it].",
    )(func)
    return click.argument("paths", nargs=-1, type=click.Path())(func)


def _without_empty_entries(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """``MCP_RECONCILER_VAR_FILE=a.yaml:`` names one file, as an empty entry of PATH names no folder; a
    file it names that does not exist is an error that names the variable (it may be set far away)."""
    if not from_environment(ctx, param.name or ""):
        return value
    missing = [v for v in value if v and not Path(v).is_file()]
    if missing:
        raise click.BadParameter(f"{VAR_FILE_VARIABLE} names {', '.join(missing)}: no such file", ctx, param)
    return tuple(v for v in value if v)


def from_environment(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` took its value from its environment variable, not the command line."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.ENVIRONMENT


def api_options(func: F) -> F:
    """Throughput controls shared by every command that calls the API."""
    from reconciler.throttle import DEFAULT_CONCURRENCY, DEFAULT_RATE  # noqa: PLC0415 - see the docstring

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
    from reconciler.throttle import ThrottleSettings, parse_rate  # noqa: PLC0415 - see the docstring
    from reconciler.workflow import Connection  # noqa: PLC0415

    try:
        requests, seconds = parse_rate(rate_limit)
    except ValueError as exc:
        raise UsageError(f"--rate-limit: {exc}") from None
    settings = ThrottleSettings(concurrency=concurrency, requests=requests, per_seconds=seconds)
    return Connection(environ=dict(os.environ), throttle=settings, fetch_progress=fetch_progress())


def fetch_progress() -> Callable[[int, int], None] | None:
    """On a terminal, a line counting the servers whose clients have been read."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\rReading the live project: {done}/{total} servers{end}", err=True, nl=False)

    return show


def format_option(
    schema: str, choices: Sequence[str] = ("text", "json", "markdown")
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format`` with ``choices`` (text first, the default), naming the JSON schema of the command's
    own output."""
    uses = {
        "text": "text for people",
        "json": f"json for policy tools and CI (schemas/{schema})",
        "markdown": "markdown for PR comments",
    }
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(choices)),
        default="text",
        show_default=True,
        help=", ".join(uses[choice] for choice in choices) + ".",
    )


FORMAT_OPTION = format_option("plan.schema.json")
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
LOCK_TIMEOUT_OPTION = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0, max=86_400),  # a day at most
    callback=lambda _ctx, _param, value: _finite(value),
    default=0,
    show_default=True,
    metavar="SECONDS",
    envvar="MCP_RECONCILER_LOCK_TIMEOUT",
    help="When another run holds this project's lock, wait up to SECONDS for it, then give up "
    "(0: refuse at once) [env: MCP_RECONCILER_LOCK_TIMEOUT].",
)


def _finite(value: float) -> float:
    if math.isnan(value):  # FloatRange lets NaN through, and a wait of NaN seconds never ends
        raise click.BadParameter("not a number of seconds")
    return value


def journal_option(func: F) -> F:
    """``--journal`` and ``--state-dir``, for the commands that change the project or the sinks; the
    journal they name is found with :func:`journal_for` once the manifests are loaded."""
    from reconciler.journal import JOURNAL_VARIABLE, STATE_DIR_VARIABLE  # noqa: PLC0415 - see the docstring

    func = click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar=STATE_DIR_VARIABLE,
        help="Folder of mcp-reconciler's state, the journal [default: .mcp-reconciler beside the "
        f"Project manifest, wherever the command runs; env: {STATE_DIR_VARIABLE}].",
    )(func)
    return click.option(
        "--journal",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar=JOURNAL_VARIABLE,
        help="JSON-lines record of every step (never secrets); also how a later run finishes open "
        f"deliveries [default: journal.jsonl in the state folder; env: {JOURNAL_VARIABLE}].",
    )(func)


def journal_for(manifest: Manifest, *, journal: Path | None, state_dir: Path | None) -> Path:
    """The journal of a run on ``manifest`` (absolute): ``--journal``, else in ``--state-dir``, else in
    ``.mcp-reconciler`` beside the Project manifest, never relative to the working directory."""
    from reconciler.journal import journal_path  # noqa: PLC0415 - see the docstring

    return journal_path(manifest.base, journal=journal, state_dir=state_dir)


def load(paths: Sequence[str], *, var_files: Sequence[str], early: Prefetch | None = None) -> Manifest:
    """The manifests under ``paths``; ``early`` starts reading the live project once its id is known."""
    refuse_saved_plans(paths)
    values: dict[str, str] = {}
    for var_file in var_files:
        values.update(read_var_file(var_file))
    on_project = early.start if early is not None else None
    return load_manifest(paths or DEFAULT_PATHS, var_values=values, on_project=on_project, rules=all_rules)


# Bytes read to tell a saved plan (its first key is format_version) from a manifest.
SAVED_PLAN_PEEK = 64 * 1024


def refuse_saved_plans(paths: Sequence[str]) -> None:
    """Refuse a plan saved by ``plan --out`` given where manifests belong (YAML reads JSON, so it
    would otherwise be read as a broken manifest)."""
    for given in paths:
        if given.lower().endswith(".json") and is_saved_plan(Path(given)):
            quoted = shlex.quote(given)
            raise UsageError(
                f"{given} is a saved plan, not a manifest: view it with mcp-reconciler show {quoted}, "
                f"or apply it with mcp-reconciler apply {quoted}"
            )


def is_saved_plan(path: Path) -> bool:
    """Whether ``path`` is a JSON object with ``format_version`` and ``changeSet``, as ``plan --out``
    writes (a damaged one included). Only a file whose start looks like one is read whole, once."""
    try:
        if not path.is_file():
            return False  # load_manifest says what is wrong with it
        with path.open("rb") as stream:
            head = stream.read(SAVED_PLAN_PEEK)
            if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") or b'"format_version"' not in head:
                return False
            text = head + stream.read()
    except OSError:
        return False
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # truncated or damaged: still a plan, which show explains
        return b'"changeSet"' in head
    return isinstance(document, dict) and "format_version" in document and "changeSet" in document


@contextmanager
def group(title: str) -> Iterator[None]:
    """Fold what happens inside into one collapsible group of the Actions log.

    The runner reads workflow commands on stderr as well; there they cannot mix into JSON or
    markdown on stdout.
    """
    folding = in_github_actions(os.environ)
    if folding:
        click.echo(f"::group::{title}", err=True)
    try:
        yield
    finally:
        if folding:
            click.echo("::endgroup::", err=True)


def publish(markdown: Callable[[], str], outputs: Mapping[str, str | int | bool]) -> None:
    """Inside GitHub Actions: the markdown (rendered only there) to the job summary, the counts to the
    step outputs."""
    if in_github_actions(os.environ):
        append_summary(os.environ, markdown())
        write_outputs(os.environ, outputs)


def colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def plural(count: int) -> str:
    return "" if count == 1 else "s"
