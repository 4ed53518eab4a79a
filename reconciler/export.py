"""Live project → manifest files: one per server, clients inline, each with a secret block.

Only fields the manifest format knows are written, zero values left out, and the reconciler's own
tags turned back into ``protect`` and ``secret.rotation``; everything else stays "not mentioned",
so a plan on a fresh export is empty. Dynamically registered clients belong to end users and are
not exported, nor are objects that carry another reconciler's ownership tag (another team's, in a
shared project: ``reconciler.ignore``). ``adopt`` marks objects the reconciler does not own yet, so
that the next apply takes them over and delivers each adopted client's current secret to its sink.

Each file starts with a ``yaml-language-server`` line that points editors at the schema of its kind in
``schemas/`` beside ``project.yaml`` (the editor variants, which the CLI passes in and writes there
too), and each document says its ``apiVersion``. The folder's ``.gitignore`` keeps the file sink's
secrets and the state folder out of Git; one that is there already is added to, never replaced.

The files are reviewed before they are committed, so live text that holds control, bidi or line
separator characters is written double-quoted with those characters (and any other non-ASCII in that
one string) as YAML escapes: it reads back exactly, and nothing in it hides or reorders what a
reviewer sees. Warnings quote live names as they are; the CLI makes them visible.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.emitter import RoundTripEmitter

from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.ignore import Scope
from reconciler.kinds import CLIENT, SERVER, registered_elsewhere
from reconciler.models import API_VERSION, DEFAULT_OWNERSHIP_TAG, ClientSpec, ProjectSpec, ServerSpec
from reconciler.scopes import CATEGORY_KEY, CATEGORY_WIRE_KEYS
from reconciler.tags import PROTECT_TAG, rotation_marker, user_tags
from reconciler.textsafe import visible

SERVER_FIELDS = [
    f.alias or n
    for n, f in ServerSpec.model_fields.items()
    if n not in SERVER.manifest_only and n != "apiVersion"
]
CLIENT_FIELDS = [f.alias or n for n, f in ClientSpec.model_fields.items() if n not in CLIENT.manifest_only]
SCOPE_FIELDS = ("name", "description", "optional", "category", "values")
DEFAULT_SINK = "local"
DEFAULT_SURFACE = ProjectSpec.model_fields["surface"].default
SCHEMA_FOLDER = "schemas"  # beside project.yaml; the schema files of reconciler.schemas.schema_files
PROJECT_SCHEMA = f"{SCHEMA_FOLDER}/project.schema.json"
SERVER_SCHEMA = f"../{SCHEMA_FOLDER}/server.schema.json"  # from servers/
# What the exported folder's .gitignore holds: each pattern, and the comment that says why.
GITIGNORE_ENTRIES = (
    (".mcp-reconciler/", "mcp-reconciler's state beside the Project file: journal, locks, crash logs."),
    (".secrets/", "Client secrets written by mcp-reconciler's file sink: never commit them."),
)


@dataclass(frozen=True)
class ExportOptions:
    project_id: str
    sink: str = DEFAULT_SINK
    sink_path: str = ".secrets/mcp-clients.json"
    ownership_tag: str = DEFAULT_OWNERSHIP_TAG
    adopt: bool = False
    tags: tuple[str, ...] = ()  # only servers with one of these tags
    names: tuple[str, ...] = ()  # only servers whose name matches one of these patterns
    # Schema files to write in schemas/ (name → text), which the files' yaml-language-server lines name.
    schemas: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Export:
    """The files to write (relative path → text), and what a person should know about them."""

    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    servers: int = 0
    clients: int = 0
    unowned: int = 0


def export_project(live: LiveState, options: ExportOptions) -> Export:
    result = Export()
    counts = Counter(s.name for s in live.servers)
    used: set[str] = set()
    for server in sorted(live.servers, key=lambda s: s.name):
        if not _selected(server, options):
            continue
        other = Scope(options.ownership_tag).other_owner(server.tags)
        if other is not None:  # another team's: adopting it from an export would take it from them
            result.warnings.append(f'server "{server.name}" ({server.id}) is skipped: {_owned_by(other)}')
            continue
        if counts[server.name] > 1:
            shared = f"{counts[server.name]} live servers share its name"
            result.warnings.append(f'server "{server.name}" ({server.id}) is skipped: {shared}')
            continue
        document = _server_document(server, live.clients_of(server.id), options, result)
        result.files[f"servers/{_file_name(server.name, used)}.yaml"] = dump(
            document, _header(server, options), schema=SERVER_SCHEMA
        )
        result.servers += 1
    project = _project_document(options)
    result.files["project.yaml"] = dump(project, "Settings of the exported project.", schema=PROJECT_SCHEMA)
    for name, text in options.schemas.items():
        result.files[f"{SCHEMA_FOLDER}/{name}"] = text
    if result.unowned and not options.adopt:
        result.warnings.append(
            f"{result.unowned} exported objects are not managed by mcp-reconciler yet: "
            "export with --adopt to take them over on the next apply"
        )
    return result


def _selected(server: LiveServer, options: ExportOptions) -> bool:
    if options.tags and not set(options.tags) & set(server.tags):
        return False
    return not options.names or any(fnmatch.fnmatchcase(server.name, pattern) for pattern in options.names)


def _server_document(
    server: LiveServer, clients: Iterable[LiveClient], options: ExportOptions, result: Export
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "MCPServer",
        **_fields(server.fields, SERVER_FIELDS, options),
    }
    if server.surface != DEFAULT_SURFACE:  # a Resource made in the console: it stays one
        document["surface"] = server.surface
    if PROTECT_TAG in server.tags:
        document["protect"] = True
    if options.ownership_tag not in server.tags:
        result.unowned += 1
        if options.adopt:
            document["adopt"] = True
    exported = []
    for client in sorted(clients, key=lambda c: c.name):
        if registered_elsewhere(client) is not None:
            continue  # an end user's client: never exported, never managed
        other = Scope(options.ownership_tag).other_owner(client.tags)
        if other is not None:
            owned = f'client "{server.name}/{client.name}" ({client.id}) is skipped: {_owned_by(other)}'
            result.warnings.append(owned)
            continue
        if not client.name:  # a manifest names every client: this one cannot be written down
            nameless = f'a client of server "{server.name}" ({client.id}) is skipped: it has no name'
            result.warnings.append(nameless)
            continue
        exported.append(_client_document(client, options, result))
    duplicates = [name for name, n in Counter(c["name"] for c in exported).items() if n > 1]
    for name in duplicates:
        result.warnings.append(
            f'client "{server.name}/{name}" is skipped: several live clients share its name'
        )
    clients_out = [c for c in exported if c["name"] not in duplicates]
    if clients_out:
        document["clients"] = clients_out
        result.clients += len(clients_out)
    return document


def _owned_by(tag: str) -> str:
    return f'another reconciler manages it (ownership tag "{tag}")'


def _client_document(client: LiveClient, options: ExportOptions, result: Export) -> dict[str, Any]:
    document = _fields(client.fields, CLIENT_FIELDS, options)
    secret: dict[str, Any] = {"sink": options.sink}
    marker = rotation_marker(client.tags)
    if marker is not None:
        secret["rotation"] = marker
    document["secret"] = secret
    if PROTECT_TAG in client.tags:
        document["protect"] = True
    if options.ownership_tag not in client.tags:
        result.unowned += 1
        if options.adopt:
            document["adopt"] = True
    return document


def _fields(live: Mapping[str, Any], names: Iterable[str], options: ExportOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = live.get(name)
        if name == "tags":
            value = user_tags(value or [], options.ownership_tag)
        elif name == "approvedScopes":
            value = [_scope(s) for s in value or []]
        cleaned = _without_zeros(value)
        if cleaned is not None:
            out[name] = cleaned
    return out


def _scope(item: Mapping[str, Any]) -> dict[str, Any]:
    """A live scope as a manifest writes it; a category a manifest cannot name (one the API added
    later) is left out, and planning keeps the scope where it lives."""
    scope = {k: item[k] for k in SCOPE_FIELDS if k in item}
    if scope.get(CATEGORY_KEY) not in CATEGORY_WIRE_KEYS:
        scope.pop(CATEGORY_KEY, None)
    return scope


def _without_zeros(value: Any) -> Any:
    """The value with zero values left out (None when nothing is left), and ``${`` escaped."""
    if isinstance(value, Mapping):
        kept = {k: v for k, v in ((k, _without_zeros(v)) for k, v in value.items()) if v is not None}
        return kept or None
    if isinstance(value, list):
        items = [v for v in (_without_zeros(item) for item in value) if v is not None]
        return items or None
    if value in (None, "", False, 0) and not isinstance(value, float):
        return None
    if isinstance(value, str):
        return value.replace("${", "$${")  # the loader substitutes ${...}; keep the text as it is
    return value


def _project_document(options: ExportOptions) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Project",
        "projectId": options.project_id,
        "ownershipTag": options.ownership_tag,
        "defaultSink": options.sink,
        "sinks": {options.sink: {"type": "file", "path": options.sink_path}},
    }


def _header(server: LiveServer, options: ExportOptions) -> str:
    return f"Exported from project {options.project_id}: MCP server {server.id}."


MAX_FILE_STEM = 80  # well under every file system's 255-byte name limit, and readable in a listing


def _file_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "server"
    if len(base) > MAX_FILE_STEM:  # a long live name: cut, with a digest so that cut names stay apart
        base = f"{base[: MAX_FILE_STEM - 13].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    candidate, number = base, 2
    while candidate in used:
        candidate, number = f"{base}-{number}", number + 1
    used.add(candidate)
    return candidate


def gitignore(existing: str | None) -> str:
    """The exported folder's .gitignore: ``existing`` (None: there is none) with each pattern of
    ``GITIGNORE_ENTRIES`` it lacks added at its end, so that nothing a person wrote there is lost."""
    text = existing or ""
    present = {line.strip() for line in text.splitlines()}
    missing = [(pattern, why) for pattern, why in GITIGNORE_ENTRIES if pattern not in present]
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"# {why}\n{pattern}\n" for pattern, why in missing)


def dump(document: Mapping[str, Any], comment: str, *, schema: str | None = None) -> str:
    """YAML for people: block style, keys in the order written, comments on top: the schema an editor
    should check it with (relative to the file), then ``comment``."""
    yaml = YAML(typ="rt")
    yaml.Emitter = _VisibleEmitter
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 110
    stream = io.StringIO()
    yaml.dump(dict(document), stream)
    # A comment ends at a line break: one in a live id must not start YAML of its own.
    editor = f"# yaml-language-server: $schema={schema}\n" if schema else ""
    return f"{editor}# {visible(comment)}\n" + stream.getvalue()


class _VisibleEmitter(RoundTripEmitter):
    """ruamel's emitter, writing a string that :func:`visible` would change as if Unicode were not
    allowed: double-quoted, with every non-ASCII character escaped (C0 and C1 controls it escapes
    anyway; bidi characters and U+2028/U+2029/U+0085 it would otherwise write as they are)."""

    def analyze_scalar(self, scalar: Any) -> Any:
        if not _hidden_characters(scalar):
            return super().analyze_scalar(scalar)
        allowed, self.allow_unicode = self.allow_unicode, False
        try:
            return super().analyze_scalar(scalar)
        finally:
            self.allow_unicode = allowed

    def write_double_quoted(self, text: Any, split: Any = True) -> None:
        if not _hidden_characters(text):
            super().write_double_quoted(text, split)
            return
        allowed, self.allow_unicode = self.allow_unicode, False
        try:
            super().write_double_quoted(text, split)
        finally:
            self.allow_unicode = allowed


def _hidden_characters(text: Any) -> bool:
    return isinstance(text, str) and visible(text) != text
