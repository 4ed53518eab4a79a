"""The export command: write manifests from a live project, to start managing it from Git."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from reconciler.cli.common import api_options, connection, format_option, plural
from reconciler.errors import ExitCode, UsageError
from reconciler.export import DEFAULT_SINK, SCHEMA_FOLDER, ExportOptions, export_project, gitignore
from reconciler.files import write_atomically
from reconciler.manifest import load_manifest
from reconciler.models import DEFAULT_OWNERSHIP_TAG, Manifest
from reconciler.render.results import as_json, export_document
from reconciler.schemas import KIND_SCHEMAS, schema_files
from reconciler.textsafe import visible
from reconciler.workflow import fetch_for_export


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
    Each file's first line points editors at its schema in --out/schemas/, which
    export writes too (see: mcp-reconciler schemas --help).

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
        sink_path=".secrets/mcp-clients.json",  # counts from the Project file in --out: out/.secrets
        ownership_tag=ownership_tag,
        adopt=adopt,
        tags=tags,
        names=names,
        schemas={n: text for n, text in schema_files().items() if n in KIND_SCHEMAS.values()},
    )
    result = export_project(live, options)
    files = {**result.files, ".gitignore": gitignore(_text(out / ".gitignore"))}  # added to, not replaced
    existing = [name for name in files if name != ".gitignore" and _conflicts(out / name, files[name])]
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
            sink_path=str(out / options.sink_path),  # where the file lands, as --out is given
            adopt=adopt,
            unowned=result.unowned,
            warnings=result.warnings,
        )
        click.echo(as_json(document), nl=False)
    return ExitCode.OK


def _conflicts(path: Path, text: str) -> bool:
    """Whether writing ``text`` at ``path`` would replace a file: a schema file that holds ``text``
    already (written by ``mcp-reconciler schemas`` or an earlier export) is not replaced."""
    if not path.exists():
        return False
    return path.parent.name != SCHEMA_FOLDER or _text(path) != text


def _text(path: Path) -> str | None:
    """What the file at ``path`` holds; None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {visible(str(path))}: {reason}") from None


def _server_files(manifest: Manifest, out: Path) -> dict[str, str]:
    """Each server's file, relative to ``out``, as the loaded manifests locate it."""
    found = {}
    for server in manifest.servers:
        where = manifest.locations.get(("server", server.name))
        if where is not None:
            path = Path(where.file)
            found[server.name] = (path.relative_to(out) if path.is_relative_to(out) else path).as_posix()
    return found
