"""apply and secrets check: the commands that change the project or the sinks."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from reconciler.cli.common import (
    DEFAULT_PATHS,
    LOCK_TIMEOUT_OPTION,
    TARGET_OPTION,
    api_options,
    colour,
    connection,
    format_option,
    journal_for,
    journal_option,
    load,
    manifest_options,
)
from reconciler.errors import (
    ApplyError,
    DeleteBudgetError,
    ExitCode,
    SecretDeliveryError,
    UsageError,
)
from reconciler.lock import Holder, LockSettings, lock_directory
from reconciler.models import Manifest
from reconciler.plan import ApplyResult, Change, Plan
from reconciler.planner import PlanOptions, Target
from reconciler.render.github import in_github_actions
from reconciler.render.results import (
    apply_document,
    as_json,
    secrets_document,
    secrets_problems,
    secrets_summary,
)
from reconciler.render.text import apply_summary, render_plan_text
from reconciler.secret import Secret
from reconciler.textsafe import visible
from reconciler.workflow import (
    ApplySettings,
    apply_fresh,
    apply_saved,
    check_secrets,
    load_saved_plan,
    plan_key,
    saved_plan_sources,
)


@click.command("apply")
@manifest_options
@api_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking (required when not on a terminal).")
@click.option(
    "--prune/--no-prune", default=None, help="Delete owned objects not in the manifests [Project: prune]."
)
@click.option("--allow-deletes", type=click.IntRange(min=0), help="Accept up to N deletes, over maxDeletes.")
@TARGET_OPTION
@journal_option
@LOCK_TIMEOUT_OPTION
@format_option("apply.schema.json", choices=("text", "json"))
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
    journal: Path | None,
    state_dir: Path | None,
    lock_timeout: float,
    output_format: str,
) -> int:
    """Make the Descope project match the manifests, or apply a saved plan.

    \b
    mcp-reconciler apply [PATHS...]             plan, show it, ask, then apply
    mcp-reconciler apply plan.json [PATHS...]   apply exactly a saved plan (no prompt)

    A saved plan is applied only when the manifests (PATHS and --var-file, by
    default those the plan was made from) are the ones it was made from, and
    planning again now gives the same changes; sinks come from the manifests.
    With MCP_RECONCILER_PLAN_KEY set, only plans signed with it are applied.

    New and rotated client secrets go to their sinks and are never printed.
    One apply (or secrets check --fix) at a time per project on this machine:
    another one waits up to --lock-timeout, then exits 1 naming the holder.

    With --format json, stdout carries one document at the end, the result of
    each change (never a secret); the plan, prompt and progress go to stderr.
    """
    json_out = output_format == "json"
    link = connection(concurrency, rate_limit)
    lock = _lock_settings(lock_timeout, paths)

    def settings(manifest: Manifest) -> ApplySettings:
        """The journal beside the manifests' Project file (unless --journal or --state-dir say)."""
        where = journal_for(manifest, journal=journal, state_dir=state_dir)
        return ApplySettings(journal=where, mask=_masker(err=json_out), progress=ProgressLine(), lock=lock)

    if paths and paths[0].endswith(".json") and Path(paths[0]).is_file():
        if targets or prune is not None or allow_deletes is not None:
            plan_only = "--target, --prune and --allow-deletes"
            raise UsageError(f"a saved plan is applied as it is: {plan_only} belong to plan")
        saved = load_saved_plan(Path(paths[0]), signing_key=plan_key(os.environ))
        manifest_paths, manifest_vars = saved_plan_sources(saved, paths[1:], var_files=var_files)
        manifest = load(manifest_paths, var_files=manifest_vars)
        made_from = " ".join(manifest_paths or DEFAULT_PATHS)
        made_from += "".join(f" --var-file {v}" for v in manifest_vars)
        click.echo(
            visible(f"Applying {paths[0]} (change set {saved.change_set}), made from {made_from}"), err=True
        )

        def show(verified: Plan) -> None:
            _show_plan(verified, err=json_out)

        applied = asyncio.run(apply_saved(saved, manifest, link, settings(manifest), show))
        return _finish(applied, saved, json_out=json_out)
    manifest = load(paths, var_files=var_files)
    options = PlanOptions(
        prune=prune, allow_deletes=allow_deletes, targets=tuple(Target.parse(t) for t in targets)
    )
    try:
        plan, result = asyncio.run(
            apply_fresh(manifest, link, options, settings(manifest), _confirmer(auto_approve, err=json_out))
        )
    except DeleteBudgetError as refused:  # the whole plan first, then the refusal (nothing was applied)
        _show_plan(refused.plan, err=json_out)
        raise
    if not plan.changes:
        _show_plan(plan, err=json_out)
    elif result is None:
        click.echo("Apply cancelled; nothing was changed.", err=True)
        if json_out:
            click.echo(as_json(apply_document(plan, ApplyResult(), cancelled=True)), nl=False)
        return ExitCode.ERROR
    return _finish(result, plan, json_out=json_out)


def _show_plan(plan: Plan, *, err: bool) -> None:
    """The plan as text: on stdout, or on stderr when stdout carries JSON (coloured by that stream)."""
    shade = (sys.stderr.isatty() and "NO_COLOR" not in os.environ) if err else colour()
    click.echo(render_plan_text(plan, colour=shade), nl=False, err=err)


def _confirmer(auto_approve: bool, *, err: bool = False) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        _show_plan(plan, err=err)
        if auto_approve:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "apply needs --auto-approve when not run from a terminal (or apply a saved plan)"
            )
        answer: str = click.prompt(
            "\nApply these changes? Only 'yes' will be accepted", default="", show_default=False, err=err
        )
        return answer == "yes"

    return confirm


def _lock_settings(timeout: float, arguments: tuple[str, ...]) -> LockSettings:
    """This run's claim on the project's lock: what it is, how long it waits, what it says meanwhile."""
    command = shlex.join([*click.get_current_context().command_path.split(), *arguments])

    def waiting(holder: Holder | None) -> None:
        who = holder or "another run"
        click.echo(
            f"The project is locked by {visible(str(who))}; waiting up to {timeout:g} s (--lock-timeout)",
            err=True,
        )

    return LockSettings(
        directory=lock_directory(os.environ), timeout=timeout, command=command, on_wait=waiting
    )


def _masker(*, err: bool = False) -> Callable[[Secret], None] | None:
    if not in_github_actions(os.environ):
        return None

    def mask(secret: Secret) -> None:
        # The runner hides every later occurrence of a value announced this way. It reads workflow
        # commands on stderr too: there (``err``, when stdout carries JSON) the JSON stays whole.
        click.echo(f"::add-mask::{secret.reveal()}", err=err)

    return mask


def _finish(result: ApplyResult | None, plan: Plan, *, json_out: bool = False) -> int:
    """Report the result: for people (stderr, and the summary on stdout in text mode) and, with
    ``json_out``, as one JSON document on stdout; then exit as the result says."""
    if result is None:
        if json_out:  # nothing to do: a document with no changes
            click.echo(as_json(apply_document(plan, ApplyResult())), nl=False)
        return ExitCode.OK
    for notice in result.notices:
        click.echo(f"note: {visible(notice)}", err=True)
    for change, reason in result.failed:
        click.echo(f"failed: {change.action.value} {change.address}: {visible(reason)}", err=True)
    for change, reason in result.skipped:
        click.echo(f"skipped: {change.action.value} {change.address}: {visible(reason)}", err=True)
    for address, reason in result.undelivered:
        click.echo(f"secret not delivered: {visible(address)}: {visible(reason)}", err=True)
    click.echo(apply_summary(result), err=json_out)
    if json_out:  # the last thing on stdout, before the error (if any) goes to stderr
        click.echo(as_json(apply_document(plan, result)), nl=False)
    # Failed changes win over undelivered secrets (exit 1 over 3): the project is not as planned, and
    # that needs a person first; the message still counts the secrets, and the next run delivers them.
    undelivered = (
        f"{len(result.undelivered)} secret(s) did not reach their sink; the next apply (or "
        "'mcp-reconciler secrets check --fix') delivers them again"
    )
    if result.failed or result.skipped:
        also = f"; also, {undelivered}" if result.undelivered else ""
        raise ApplyError(
            f"{len(result.failed)} change(s) failed and {len(result.skipped)} were skipped{also}"
        )
    if result.undelivered:
        raise SecretDeliveryError(undelivered)
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
            click.echo(f"::group::Applying {total} changes", err=True)

    def done(self, change: Change, error: str | None) -> None:
        self.count += 1
        self.failures += error is not None
        if not self.tty:
            # The address is escaped already; the error may quote an API answer or a sink's words.
            status = f"FAILED ({visible(error)})" if error else "done"
            click.echo(
                f"[{self.count}/{self.total}] {change.action.value} {visible(change.address)}: {status}",
                err=True,
            )
            return
        rate = self.count / max(time.monotonic() - self.started, 1e-6)
        line = f"\r{self.count}/{self.total} changes, {self.failures} failed, {rate:.1f}/s\x1b[K"
        click.echo(line, err=True, nl=False)

    def finish(self) -> None:
        if self.tty and self.total:
            click.echo("", err=True)
        if in_github_actions(os.environ):
            click.echo("::endgroup::", err=True)


@click.group("secrets")
def secrets_group() -> None:
    """Check that every managed client's secret is in its sink."""


@secrets_group.command("check")
@manifest_options
@api_options
@click.option(
    "--fix", is_flag=True, help="Deliver the current secret (read from Descope) where it is missing."
)
@journal_option
@LOCK_TIMEOUT_OPTION
@format_option("secrets-check.schema.json", choices=("text", "json"))
def secrets_check(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    fix: bool,
    journal: Path | None,
    state_dir: Path | None,
    lock_timeout: float,
    output_format: str,
) -> int:
    """Verify each managed client's current secret against its sink (exit 3 if any is not there).

    A command sink cannot be asked what it holds, nor GitHub for a secret's
    value: such secrets are "unreadable", not verified, and counted apart in
    the summary; alone they are no error (exit 0), unless the journal says
    the last delivery there did not arrive ("undelivered": exit 3).

    With --fix it holds the project's lock, as apply does (see --lock-timeout).
    With --format json, stdout carries one document (the lines go to stderr).
    """
    json_out = output_format == "json"
    manifest = load(paths, var_files=var_files)
    lock = _lock_settings(lock_timeout, (*paths, "--fix")) if fix else None
    link = connection(concurrency, rate_limit)
    mask = _masker(err=json_out)
    where = journal_for(manifest, journal=journal, state_dir=state_dir)
    statuses = asyncio.run(check_secrets(manifest, link, fix=fix, journal=where, mask=mask, lock=lock))
    for status in statuses:
        said = status.detail or ("cannot be read back: not verified" if status.state == "unreadable" else "")
        detail = f": {visible(said)}" if said else ""
        sink = manifest.sink_label(status.sink)  # with its resolved path: "local (/abs/clients.json)"
        line = f"{status.state:>10}  {visible(status.address)} -> sink {visible(sink)}{detail}"
        click.echo(line, err=json_out)
    bad = secrets_problems(statuses)
    sink_types = {name: spec.type for name, spec in manifest.project.sinks.items()}
    click.echo(visible(secrets_summary(statuses, sink_types)), err=json_out)
    if json_out:
        click.echo(as_json(secrets_document(manifest.project.projectId, statuses, fix=fix)), nl=False)
    if bad:
        hint = "" if fix else "; run with --fix to deliver them"
        raise SecretDeliveryError(f"{len(bad)} secret(s) are not in their sinks{hint}")
    return ExitCode.OK
