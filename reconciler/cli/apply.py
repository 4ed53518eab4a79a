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
    JOURNAL_OPTION,
    LOCK_TIMEOUT_OPTION,
    TARGET_OPTION,
    api_options,
    colour,
    connection,
    load,
    manifest_options,
)
from reconciler.cli.main import cli
from reconciler.errors import (
    ApplyError,
    DeleteBudgetError,
    ExitCode,
    SecretDeliveryError,
    UsageError,
)
from reconciler.lock import Holder, LockSettings, lock_directory
from reconciler.plan import ApplyResult, Change, Plan
from reconciler.planner import PlanOptions, Target
from reconciler.render.github import in_github_actions
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
@LOCK_TIMEOUT_OPTION
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
    lock_timeout: float,
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
    """
    link = connection(concurrency, rate_limit)
    lock = _lock_settings(lock_timeout, paths)
    settings = ApplySettings(journal=journal, mask=_masker(), progress=ProgressLine(), lock=lock)
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
            click.echo(render_plan_text(verified, colour=colour()), nl=False)

        return _finish(asyncio.run(apply_saved(saved, manifest, link, settings, show)))
    manifest = load(paths, var_files=var_files)
    options = PlanOptions(
        prune=prune, allow_deletes=allow_deletes, targets=tuple(Target.parse(t) for t in targets)
    )
    try:
        plan, result = asyncio.run(apply_fresh(manifest, link, options, settings, _confirmer(auto_approve)))
    except DeleteBudgetError as refused:  # the whole plan first, then the refusal (nothing was applied)
        click.echo(render_plan_text(refused.plan, colour=colour()), nl=False)
        raise
    if not plan.changes:
        click.echo(render_plan_text(plan, colour=colour()), nl=False)
    elif result is None:
        click.echo("Apply cancelled; nothing was changed.", err=True)
        return ExitCode.ERROR
    return _finish(result)


def _confirmer(auto_approve: bool) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        click.echo(render_plan_text(plan, colour=colour()), nl=False)
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
    for notice in result.notices:
        click.echo(f"note: {visible(notice)}", err=True)
    for change, reason in result.failed:
        click.echo(f"failed: {change.action.value} {change.address}: {visible(reason)}", err=True)
    for change, reason in result.skipped:
        click.echo(f"skipped: {change.action.value} {change.address}: {visible(reason)}", err=True)
    for address, reason in result.undelivered:
        click.echo(f"secret not delivered: {visible(address)}: {visible(reason)}", err=True)
    click.echo(apply_summary(result))
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
@LOCK_TIMEOUT_OPTION
def secrets_check(
    *,
    paths: tuple[str, ...],
    var_files: tuple[str, ...],
    concurrency: int,
    rate_limit: str,
    fix: bool,
    journal: Path,
    lock_timeout: float,
) -> int:
    """Verify each managed client's current secret against its sink (exit 3 if any is not there).

    With --fix it holds the project's lock, as apply does (see --lock-timeout).
    """
    manifest = load(paths, var_files=var_files)
    lock = _lock_settings(lock_timeout, (*paths, "--fix")) if fix else None
    link = connection(concurrency, rate_limit)
    statuses = asyncio.run(check_secrets(manifest, link, fix=fix, journal=journal, mask=_masker(), lock=lock))
    for status in statuses:
        detail = f": {visible(status.detail)}" if status.detail else ""
        click.echo(f"{status.state:>10}  {visible(status.address)} -> sink {visible(status.sink)}{detail}")
    bad = [s for s in statuses if not s.ok and s.state != "absent"]
    click.echo(f"{len(statuses) - len(bad)} of {len(statuses)} secrets are in their sinks or not issued yet.")
    if bad:
        hint = "" if fix else "; run with --fix to deliver them"
        raise SecretDeliveryError(f"{len(bad)} secret(s) are not in their sinks{hint}")
    return ExitCode.OK
