"""The demo command: the whole workflow against an embedded emulator, narrated for a newcomer.

No Descope project, no credentials, no network: the emulator runs in this process on 127.0.0.1
with a management key made up for the run (never shown), and secrets go to a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import click

from reconciler.cli.common import DEFAULT_PATHS, colour
from reconciler.cli.console import change
from reconciler.emulator import EmulatorConfig, running_emulator
from reconciler.errors import ExitCode, UsageError
from reconciler.manifest import load_manifest
from reconciler.models import Manifest
from reconciler.planner import PlanOptions
from reconciler.render.text import apply_summary, render_drift_text, render_plan_text
from reconciler.workflow import ApplySettings, Connection, apply_fresh, drift_project, reviewed_plan

# What the emulator holds before the demo: a server someone made by hand in the console, with a
# client an end user registered dynamically. The reconciler must leave both alone.
EXISTING = {
    "servers": [
        {
            "name": "playground",
            "description": "Made by hand in the Descope console",
            "clients": [{"name": "cursor", "registrationType": "dcr", "scopes": ["read"]}],
        }
    ]
}
# The change someone then makes by hand to the first server, as emulator-console's edits.
HAND_EDITS = ("description=Quick fix made in the console", "tags+=edited-in-console")


@click.command("demo")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep secrets and journal here."
)
def demo(paths: tuple[str, ...], keep: Path | None) -> int:
    """Try the whole workflow on your machine: validate, plan, apply, a hand-made change, drift, plan.

    Runs against an embedded Descope emulator: no account, no credentials, no network.
    """
    work = keep or Path(tempfile.mkdtemp(prefix="mcp-reconciler-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        _walkthrough(paths or DEFAULT_PATHS, work, kept=keep is not None)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(f"\nThe demo took {time.monotonic() - started:.1f} s.")
    return ExitCode.OK


def _walkthrough(paths: tuple[str, ...], work: Path, *, kept: bool) -> None:
    key = secrets.token_urlsafe(24)  # this run's management key; never shown
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DESCOPE_")}
    environ["MCP_VAR_SECRETS_DIR"] = str(work / "secrets")
    manifest = load_manifest(paths, environ=environ)
    project = manifest.project.projectId
    if not manifest.servers:
        raise UsageError("the demo needs at least one MCPServer in the manifests")
    if not re.fullmatch(r"[A-Za-z0-9]+", project):
        raise UsageError(
            f"the demo needs a projectId of plain ASCII letters and digits (such as P2DEMO), not {project!r}"
        )
    with running_emulator(EmulatorConfig(project_id=project, management_key=key)) as emulator:
        emulator.seed(EXISTING)
        environ |= {"DESCOPE_BASE_URL": emulator.base_url, "DESCOPE_MANAGEMENT_KEY": key}
        link = Connection(environ=environ)
        _intro(manifest, emulator.base_url)
        _step(1, f"mcp-reconciler validate {' '.join(paths)}", why="Check the manifests offline.")
        clients = sum(len(s.clients) for s in manifest.servers)
        click.echo(
            f"Manifests are valid: {len(manifest.servers)} servers, {clients} clients, project {project}."
        )
        _step(2, f"mcp-reconciler plan {' '.join(paths)}", why="Compare them with the live project.")
        click.echo(
            render_plan_text(asyncio.run(reviewed_plan(manifest, link, PlanOptions())), colour=colour()),
            nl=False,
        )
        _step(3, f"mcp-reconciler apply {' '.join(paths)} --auto-approve", why="Make the project match.")
        settings = ApplySettings(journal=work / "journal.jsonl")
        _plan, result = asyncio.run(apply_fresh(manifest, link, PlanOptions(), settings, lambda _plan: True))
        if result is not None:
            click.echo(apply_summary(result))
        # Someone edits a server in the Descope console: here, as emulator-console does it.
        edit = [manifest.servers[0].name, *HAND_EDITS]
        why = "A change made by hand, outside Git."
        _step(4, f"mcp-reconciler emulator-console set {shlex.join(edit)}", why=why)
        click.echo(change(edit[0], HAND_EDITS, environ | {"DESCOPE_PROJECT_ID": project}))
        _step(5, f"mcp-reconciler drift {' '.join(paths)}", why="What a scheduled drift check reports.")
        click.echo(render_drift_text(asyncio.run(drift_project(manifest, link)), colour=colour()), nl=False)
        _step(
            6,
            f"mcp-reconciler plan {' '.join(paths)}",
            why="The next plan puts the manifests back in charge.",
        )
        click.echo(
            render_plan_text(asyncio.run(reviewed_plan(manifest, link, PlanOptions())), colour=colour()),
            nl=False,
        )
    _outro(work, kept=kept)


def _intro(manifest: Manifest, base_url: str) -> None:
    click.echo(
        f"mcp-reconciler demo: project {manifest.project.projectId} on an embedded Descope emulator at "
        f"{base_url}.\nIt already holds a server made by hand (playground) with a dynamically registered "
        "client: mcp-reconciler will leave both alone."
    )


def _step(number: int, command: str, *, why: str) -> None:
    click.echo("")
    click.echo(
        click.style(f"Step {number} of 6: {why}", bold=True) if colour() else f"Step {number} of 6: {why}"
    )
    click.echo(f"$ {command}")


def _outro(work: Path, *, kept: bool) -> None:
    sinks = sorted(p.name for p in (work / "secrets").glob("*") if not p.name.startswith("."))
    where = f"{work / 'secrets'}" + (
        "" if kept else " (a temporary folder, now removed: --keep DIR keeps it)"
    )
    click.echo("")
    click.echo(f"Client secrets went to {', '.join(sinks)} in {where}, mode 0600. None was printed.")
    click.echo(
        "Next: set DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY for a real project and run "
        "'mcp-reconciler plan';\n"
        "the README shows CI: plan on pull requests, apply on merge, drift on a schedule."
    )
