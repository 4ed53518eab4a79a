"""validate: the manifests checked offline. It reads only files, so it loads neither the API client
nor the planner."""

from __future__ import annotations

import os

import click

from reconciler.cli.common import format_option, load, manifest_options, plural
from reconciler.errors import ExitCode, ManifestError
from reconciler.manifest import control_character_warnings
from reconciler.render.github import error_annotations, in_github_actions
from reconciler.render.results import as_json, validate_invalid, validate_valid
from reconciler.textsafe import visible


@click.command()
@manifest_options
@format_option("validate.schema.json", choices=("text", "json"))
def validate(paths: tuple[str, ...], var_files: tuple[str, ...], output_format: str) -> int:
    """Check manifests offline: YAML, schemas, names, scopes and sinks.

    PATHS are files or folders (searched at any depth for *.yaml and *.yml);
    the default is ./manifests. Every problem is reported as FILE:LINE:COL.
    Names, scope names and tags holding control or bidi characters are valid,
    with a warning each (they are shown escaped). With --format json, stdout
    carries one document, valid or not (problems on stderr as well; exit 1).
    """
    try:
        manifest = load(paths, var_files=var_files)
    except ManifestError as error:
        if output_format != "json":
            raise
        click.echo(as_json(validate_invalid(error.problems)), nl=False)
        for problem in error.problems:  # for people, as in text mode
            click.echo(visible(str(problem)), err=True)
        if in_github_actions(os.environ):  # on stderr, which the runner reads too: stdout is the JSON
            for line in error_annotations(error.problems):
                click.echo(visible(line), err=True)
        click.echo(f"error: {visible(str(error))}", err=True)
        return ExitCode.ERROR
    warnings = control_character_warnings(manifest)
    for warning in warnings:
        click.echo(warning, err=True)
    if output_format == "json":
        click.echo(as_json(validate_valid(manifest, warnings)), nl=False)
        return ExitCode.OK
    clients = sum(len(server.clients) for server in manifest.servers)
    click.echo(
        f"Manifests are valid: {len(manifest.servers)} server{plural(len(manifest.servers))}, "
        f"{clients} client{plural(clients)}, project {visible(manifest.project.projectId)}."
    )
    return ExitCode.OK
