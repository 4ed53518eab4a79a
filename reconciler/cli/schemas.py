"""schemas: the JSON Schema files, written where an editor or a CI tool can read them (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli.common import plural
from reconciler.errors import ExitCode
from reconciler.files import write_atomically
from reconciler.schemas import KIND_SCHEMAS, schema_files
from reconciler.textsafe import visible


@click.command("schemas")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the files to (created if needed; files of the same name are replaced).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="The manifest schemas as validate applies them, without the ${VAR} allowance.",
)
def schemas_command(*, out: Path | None, strict: bool) -> int:
    """Write the JSON Schemas of the manifests and of the JSON output, for editors and CI.

    \b
    mcp-reconciler schemas                       list the files and their $id
    mcp-reconciler schemas --out schemas         write them to ./schemas

    Then point an editor at one with a manifest's first line (the path is
    relative to the manifest):

    \b
    # yaml-language-server: $schema=schemas/server.schema.json

    Each file stands alone (no reference to another). The manifest
    schemas are written in their variant for editors,
    which takes ${NAME} and ${NAME:-default} wherever a value may hold one;
    validate checks the values after substitution, and --strict writes them
    as validate applies them. Each $id is an identifier, not an address:
    nothing is served there. `export` writes the manifest schemas beside
    the manifests it writes.
    """
    files = schema_files(editor=not strict)
    if out is None:
        width = max(len(name) for name in files)
        for name, text in files.items():
            role = "manifest" if name in KIND_SCHEMAS.values() else "output"
            click.echo(f"{name:<{width}}  {role:<8}  {json.loads(text)['$id']}")
        return ExitCode.OK
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomically(out / name, text, mode=0o644)
    variant = "strict" if strict else "for editors"
    click.echo(
        f"Wrote {len(files)} schema file{plural(len(files))} to {visible(str(out))} "
        f"(manifest schemas {variant})."
    )
    return ExitCode.OK
