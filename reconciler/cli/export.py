"""The export command: write manifests from a live project, to start managing it from Git."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from reconciler.cli.common import api_options, connection, format_option, plural
from reconciler.errors import ExitCode, UsageError
from reconciler.export import DEFAULT_SINK, ExportOptions, export_project
from reconciler.files import write_atomically
from reconciler.manifest import load_manifest
from reconciler.models import DEFAULT_OWNERSHIP_TAG, Manifest
from reconciler.render.results import as_json, export_document
from reconciler.textsafe import visible
from reconciler.workflow import fetch_for_export

GITIGNORE = "# Client secrets written by mcp-reconciler's file sink: never commit them.\n.secrets/\n"


@click.command("export")
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write."
)
@click.option("--project-id", envvar="DESCOPE_PROJECT_ID", help="The project [env: DESCOPE_PROJECT_ID].")
@click.option("--sink", default=DEFAULT_SINK, show_default=True, help="The sink the secret blocks name.")
@click.option("--tag", "tags", multiple=True, help="Only servers with this tag (repeatable).")
@click.option("--name", "names", multiple=True, help="Only servers whose name matches (glob; repeatable).")
@click.option("--adopt", is_flag=True, help="Mark objects not yet managed for adoption by the next apply.")
@click.option("--ownership-tag", default=DEFAULT_OWNERSHIP_TAG, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite files that already exist in --out.")
@api_options
@format_option("export.schema.json", choices=("text", "json"))
def export_command(
    *,
    out: Path,
    project_id: str | None,
    sink: str,
    tags: tuple[str, ...],
    names: tuple[str, ...],
    adopt: bool,
    ownership_tag: str,
    force: bool,
    concurrency: int,
    rate_limit: str,
    output_format: str,
) -> int:
    """Write manifests from the live project: one file per server, clients inline.

    Each client's secret block names --sink; the Project document declares it as a
    file sink under --out (with a .gitignore keeping it out of Git): change it to your
    Vault, AWS or GitHub sink before the first apply if the secrets belong there.

    With --format json, stdout carries one document naming the files written and
    the servers and clients in them (never a secret); the rest goes to stderr.
    """
    if not project_id:
        raise UsageError("no project: set DESCOPE_PROJECT_ID or pass --project-id")
    link = connection(concurrency, rate_limit)
    live = asyncio.run(fetch_for_export(link, project_id))
    options = ExportOptions(
        project_id=project_id,
        sink=sink,
        sink_path=str(out / ".secrets" / "mcp-clients.json"),
        ownership_tag=ownership_tag,
        adopt=adopt,
        tags=tags,
        names=names,
    )
    result = export_project(live, options)
    files = {**result.files, ".gitignore": GITIGNORE}
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        raise UsageError(f"{out} already holds {', '.join(sorted(existing))}: use --force to overwrite")
    for name, text in files.items():
        write_atomically(out / name, text, mode=0o644)
    for warning in result.warnings:  # they quote live names
        click.echo(f"warning: {visible(warning)}", err=True)
    folder = visible(str(out))
    click.echo(
        f"Exported {result.servers} server{plural(result.servers)} and {result.clients} "
        f"client{plural(result.clients)} to {folder}; check them with: mcp-reconciler validate {folder}",
        err=output_format == "json",
    )
    written = load_manifest([str(out)], environ=dict(os.environ))  # what we wrote must validate
    if output_format == "json":
        document = export_document(
            written,
            out=str(out),
            files=files,
            server_files=_server_files(written, out),
            sink=options.sink,
            sink_path=options.sink_path,
            adopt=adopt,
            unowned=result.unowned,
            warnings=result.warnings,
        )
        click.echo(as_json(document), nl=False)
    return ExitCode.OK


def _server_files(manifest: Manifest, out: Path) -> dict[str, str]:
    """Each server's file, relative to ``out``, as the loaded manifests locate it."""
    found = {}
    for server in manifest.servers:
        where = manifest.locations.get(("server", server.name))
        if where is not None:
            path = Path(where.file)
            found[server.name] = (path.relative_to(out) if path.is_relative_to(out) else path).as_posix()
    return found
