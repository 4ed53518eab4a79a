"""Loads manifest files into one validated :class:`Manifest`, or raises every problem found at once.

Stages: find files → read YAML (``yamlsource``) → check each document against its kind's JSON
Schema (``schemas``) → build pydantic models → cross-document checks (one Project, unique names,
clients' servers and scopes, secret sinks). Each stage reports problems with file, line and column
and the loader carries on, so one run shows everything that is wrong.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter
from pydantic import ValidationError as ModelError

from reconciler.descope import assumptions
from reconciler.descope.resource_wire import UNSUPPORTED
from reconciler.errors import ManifestError, Problem, UsageError
from reconciler.findings import Rule
from reconciler.models import (
    DEFAULT_OWNERSHIP_TAG,
    KIND_MODELS,
    AwsSinkSpec,
    ClientSpec,
    FileSinkSpec,
    GithubSinkSpec,
    Location,
    Manifest,
    PolicySpec,
    ProjectSpec,
    ServerSpec,
    SinkSpec,
    StandaloneClientSpec,
    VaultSinkSpec,
    secret_key,
)
from reconciler.policy import policy_problems
from reconciler.rules import BUILTIN_RULES
from reconciler.schemas import KIND_SCHEMAS, api_version_problem, did_you_mean, schema_issues, usable_part
from reconciler.sinks.base import aws_name_problem, env_name, leaves_prefix, secret_name, vault_path
from reconciler.tags import reserved_tag_problem
from reconciler.variables import manifest_variables
from reconciler.yamlsource import MAX_FILE_BYTES, DocPath, Document, read_documents

YAML_SUFFIXES = (".yaml", ".yml")
PROJECT_ID_VARIABLE = "DESCOPE_PROJECT_ID"  # read by the API client too; a manifest's projectId must agree


def find_manifest_files(paths: Iterable[str]) -> list[tuple[Path, str]]:
    """Every YAML file under ``paths`` (any depth, sorted), with the name to show in messages.

    Nothing is skipped silently: a folder that cannot be read, or a ``*.yaml`` entry that is not a
    readable regular file (a dangling link, a FIFO, a folder), is an error, because a plan made without
    it would delete what it describes.
    """
    found: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given)
        try:
            if path.is_dir():
                found.extend((p, str(p)) for p in _yaml_files(path))
            elif path.is_file():
                found.append((path, str(path)))
            elif path.exists() or path.is_symlink():
                raise UsageError(f"{given}: not a regular file or a folder")
            else:
                raise UsageError(f"{given}: no such file or directory")
        except OSError as exc:
            raise UsageError(f"{given}: cannot be read ({exc.strerror or exc})") from None
    if not found:
        raise UsageError(
            f"no manifest files (*.yaml, *.yml) found in {', '.join(paths) or 'the given paths'}"
        )
    return found


def _yaml_files(root: Path) -> list[Path]:
    def refuse(error: OSError) -> None:
        raise UsageError(f"{error.filename}: cannot be read ({error.strerror}); no manifest may be left out")

    files = []
    for folder, folders, names in os.walk(root, onerror=refuse):
        here = Path(folder)
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(names + [f for f in folders if f.endswith(YAML_SUFFIXES)]):
            candidate = here / name
            if name.startswith(".") or not name.endswith(YAML_SUFFIXES):
                continue
            if not candidate.is_file():
                raise UsageError(f"{candidate}: named like a manifest, but not a regular file to read")
            files.append(candidate)
    return sorted(files)


def read_var_file(path: str) -> dict[str, str]:
    """A values file: one flat YAML mapping of variable names to scalar values."""
    docs, problems = read_documents(Path(path), path, {})
    data = docs[0].data if docs else None
    if not problems and docs and not isinstance(data, dict):
        problems.append(docs[0].problem((), "a values file must be a mapping of NAME: value"))
    if isinstance(data, dict):
        problems.extend(
            docs[0].problem((name,), "values must be scalars, not lists or mappings")
            for name, value in data.items()
            if isinstance(value, dict | list)
        )
    if problems:
        raise ManifestError(problems)
    return {str(k): _scalar_text(v) for k, v in (data or {}).items()}


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def load_manifest(
    paths: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    var_values: Mapping[str, str] | None = None,
    on_project: Callable[[str], None] | None = None,
    rules: Sequence[Rule] | Callable[[], Sequence[Rule]] | None = None,
) -> Manifest:
    """Load and validate the manifests under ``paths``; raise ManifestError listing every problem.

    ``on_project`` is told the project's id as soon as the file holding the Project is read and its
    Project document is valid, before the other files are read (``reconciler.prefetch`` starts reading
    the live project then). It is a hint: the loaded Manifest, or its problems, are what count.

    Variables resolve from ``var_values`` (a values file) and from ``MCP_VAR_*`` in ``environ`` (the
    process environment by default), which wins, so one run can override a file's value; see
    :func:`reconciler.variables.manifest_variables` for what else may and may never be read.
    A ``projectId`` that differs from ``DESCOPE_PROJECT_ID`` (when that is set) is a problem: the API
    client reads that variable too, and neither may silently win.

    Relative paths in the Project (file sinks, command sinks' programs) count from the folder of its
    file, never from the working directory: :attr:`Manifest.folder`, which also holds the state folder.

    The Project's ``policy`` may name only the rules in ``rules`` (None: the built-in ones; a caller
    that runs installed plugins' rules passes them too), with their parameters, and only servers and
    clients the manifests declare.
    """
    paths = list(paths)
    environ = os.environ if environ is None else environ
    variables = manifest_variables(environ, var_values)
    loader = _Loader(environment_project=environ.get(PROJECT_ID_VARIABLE, ""), rules=rules)
    files = find_manifest_files(paths)
    read_first: dict[Path, tuple[list[Document], list[Problem]]] = {}
    if on_project is not None and (project_file := _project_file(files)) is not None:
        read_first[project_file[0]] = read_documents(*project_file, variables)
        if (project_id := _project_id(read_first[project_file[0]][0])) is not None:
            on_project(project_id)
    for path, display in files:
        early = read_first.pop(path, None)
        documents, problems = early if early is not None else read_documents(path, display, variables)
        loader.problems.extend(problems)
        for doc in documents:
            loader.add(doc)
    return loader.finish(paths[0] if paths else ".")


# A line that starts a Project document in block style, as ``export`` and people write it.
_PROJECT_LINE = re.compile(rb"""^kind:[ \t]*(Project|'Project'|"Project")[ \t]*(#.*)?\r?$""", re.MULTILINE)


def _project_file(files: list[tuple[Path, str]]) -> tuple[Path, str] | None:
    """The first file with a ``kind: Project`` line (a guess, for a head start; None when none)."""
    for path, display in files:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                return None  # read_documents says what is wrong, in its turn
            if _PROJECT_LINE.search(path.read_bytes()):
                return path, display
        except OSError:
            return None
    return None


def _project_id(documents: list[Document]) -> str | None:
    """The projectId of the one valid Project document among ``documents``, if there is one."""
    probe = _Loader()
    for doc in documents:
        if isinstance(doc.data, dict) and doc.data.get("kind") == "Project":
            probe.add(doc)
    if probe.problems or len(probe.projects) != 1:
        return None
    project_id: str = probe.projects[0].spec.projectId
    return project_id


@dataclass
class _Entry:
    """A validated document, with what is needed to point back into it."""

    doc: Document
    spec: Any


class _Loader:
    def __init__(
        self,
        *,
        environment_project: str = "",
        rules: Sequence[Rule] | Callable[[], Sequence[Rule]] | None = None,
    ) -> None:
        self.environment_project = environment_project  # DESCOPE_PROJECT_ID, "" when unset
        # What the Project's policy may name; a function (the installed plugins' rules too) is called
        # only when the policy names a rule that is not built in: plugins are someone else's code.
        self.rules = BUILTIN_RULES if rules is None else rules
        self.problems: list[Problem] = []
        self.projects: list[_Entry] = []
        self.servers: list[_Entry] = []
        self.clients: list[_Entry] = []
        self.broken_projects: list[Document] = []  # too broken to build, still counted and read for sinks

    def add(self, doc: Document) -> None:
        if doc.data is None:
            return  # an empty document, e.g. after a trailing '---'
        if not isinstance(doc.data, dict):
            self.problems.append(doc.problem((), "a manifest document must be a mapping with a 'kind'"))
            return
        kind = doc.data.get("kind")
        if (unread := api_version_problem(doc)) is not None:  # another format: not read by this one's rules
            self.problems.append(unread)
            if kind == "Project":
                self.broken_projects.append(doc)
            return
        if not isinstance(kind, str) or kind not in KIND_SCHEMAS:
            self.problems.append(_kind_problem(doc, kind))
            return
        issues = schema_issues(doc, kind)
        self.problems.extend(issue.problem for issue in issues)
        data = usable_part(doc, kind, issues)
        if data is None:
            if kind == "Project":
                self.broken_projects.append(doc)
            return
        try:
            spec = KIND_MODELS[kind].model_validate(data)
        except ModelError as exc:  # the schema should have caught it; report rather than crash
            for err in exc.errors():
                self.problems.append(doc.problem(tuple(err["loc"]), err["msg"]))
            return
        entry = _Entry(doc, spec)
        {"Project": self.projects, "MCPServer": self.servers, "MCPServerClient": self.clients}[kind].append(
            entry
        )

    def finish(self, first_path: str) -> Manifest:
        project_doc = self._project_document(first_path)
        servers = self._servers()
        if project_doc is not None:
            self._check_project_id(project_doc)
            self._check_sinks(project_doc, servers)
            self._check_reserved_tags(project_doc, servers)
            self._check_policy(project_doc, servers)
        if self.projects:
            self._check_surfaces(self.projects[0].spec, servers)
        if self.problems or not self.projects:
            raise ManifestError(self.problems)
        return Manifest(
            project=self.projects[0].spec,
            servers=tuple(spec for spec, _ in servers.values()),
            locations=self._locations(servers),
            folder=folder_of(project_doc) if project_doc is not None else None,
        )

    def _project_document(self, first_path: str) -> Document | None:
        """The one Project document (built or not); reports none, or more than one."""
        docs = sorted([e.doc for e in self.projects] + self.broken_projects, key=lambda d: (d.file, d.index))
        if not docs:
            message = "no 'kind: Project' document found among the manifests read; exactly one is required"
            self.problems.append(Problem(first_path, 0, 0, "", message))
            return None
        first = f"{docs[0].file}:{docs[0].start.line}:{docs[0].start.column}"
        for extra in docs[1:]:
            message = f"a second Project document; exactly one is allowed (first at {first})"
            self.problems.append(extra.problem(("kind",), message))
        return docs[0]

    def _check_project_id(self, project: Document) -> None:
        """The Project's ``projectId`` and ``DESCOPE_PROJECT_ID`` (when both are set) name one project:
        otherwise it is not clear which project a run would change, and neither silently wins."""
        written = project.data.get("projectId")
        in_environment = self.environment_project
        if not isinstance(written, str) or not in_environment or written == in_environment:
            return
        message = (
            f"projectId is '{written}', but {PROJECT_ID_VARIABLE} is '{in_environment}' in the environment: "
            f"which project to change is unclear. Write 'projectId: ${{{PROJECT_ID_VARIABLE}}}' to take it "
            f"from the environment, or unset {PROJECT_ID_VARIABLE} (or set it to '{written}')"
        )
        self.problems.append(project.problem(("projectId",), message))

    def _servers(self) -> dict[str, tuple[ServerSpec, _ServerSource]]:
        """Servers by name, with standalone clients merged in, after the cross-document checks."""
        by_name: dict[str, tuple[ServerSpec, _ServerSource]] = {}
        for entry in self.servers:
            name = entry.spec.name
            if name in by_name:
                first = by_name[name][1].entry
                self.problems.append(
                    entry.doc.problem(
                        ("name",), f"duplicate server name '{name}' (first defined at {_where(first)})"
                    )
                )
                continue
            self._check_scopes_unique(entry)
            clients = [_ClientSource(c, entry.doc, ("clients", i)) for i, c in enumerate(entry.spec.clients)]
            source = _ServerSource(entry, clients)
            by_name[name] = (entry.spec, source)
        for entry in self.clients:
            spec: StandaloneClientSpec = entry.spec
            if spec.server not in by_name:
                hint = did_you_mean(spec.server, set(by_name))
                self.problems.append(
                    entry.doc.problem(("server",), f"no MCPServer named '{spec.server}'{hint}")
                )
                continue
            by_name[spec.server][1].clients.append(_ClientSource(_inline(spec), entry.doc, ()))
        merged = {}
        for name, (server, source) in by_name.items():
            self._check_clients(server, source)
            specs = tuple(client.spec for client in source.clients)
            merged[name] = (server.model_copy(update={"clients": specs}), source)
        return merged

    def _check_surfaces(
        self, project: ProjectSpec, servers: dict[str, tuple[ServerSpec, _ServerSource]]
    ) -> None:
        """A server on the Resources surface states nothing a Resource cannot hold."""
        for spec, source in servers.values():
            surface = spec.surface or project.surface
            if surface != "resources":
                continue
            doc = source.entry.doc
            for name, reason in UNSUPPORTED.items():
                if name in spec.model_fields_set:
                    message = (
                        f"server '{spec.name}' is on the resources surface, which has no {name}: {reason}"
                    )
                    self.problems.append(doc.problem((name,), message))
            if not spec.audienceWhitelist and assumptions.RESOURCE_URI_REQUIRED:
                message = (
                    f"server '{spec.name}' is on the resources surface, where a server needs one audience "
                    "(the Resource's uri): set audienceWhitelist to the MCP server's URL"
                )
                self.problems.append(doc.problem(("name",), message))
            if len(spec.audienceWhitelist) > 1:
                message = (
                    f"server '{spec.name}' is on the resources surface, where a server has one audience "
                    f"(the Resource's uri), not {len(spec.audienceWhitelist)}"
                )
                self.problems.append(doc.problem(("audienceWhitelist", 1), message))

    def _check_scopes_unique(self, entry: _Entry) -> None:
        seen: set[str] = set()
        for i, scope in enumerate(entry.spec.approvedScopes):
            if scope.name in seen:
                self.problems.append(
                    entry.doc.problem(
                        ("approvedScopes", i, "name"), f"duplicate approved scope '{scope.name}'"
                    )
                )
            seen.add(scope.name)

    def _check_clients(self, server: ServerSpec, source: _ServerSource) -> None:
        approved = [scope.name for scope in server.approvedScopes]
        first_by_name: dict[str, _ClientSource] = {}
        for client in source.clients:
            first = first_by_name.setdefault(client.spec.name, client)
            if first is not client:
                message = f"duplicate client name '{client.spec.name}' in server '{server.name}'"
                self.problems.append(
                    client.problem(("name",), f"{message} (first defined at {first.where()})")
                )
            for i, scope in enumerate(client.spec.scopes):
                if scope not in approved:
                    message = f"'{scope}' is not an approved scope of server '{server.name}'"
                    hint = did_you_mean(scope, approved)
                    self.problems.append(client.problem(("scopes", i), message + hint))

    def _check_sinks(self, project: Document, servers: dict[str, tuple[ServerSpec, _ServerSource]]) -> None:
        # Read from the raw document, so sinks are checked even when the Project itself is invalid.
        sinks = project.data.get("sinks")
        specs = {str(name): _sink_spec(raw) for name, raw in sinks.items()} if isinstance(sinks, dict) else {}
        declared = set(specs)
        default = project.data.get("defaultSink")
        default = default if isinstance(default, str) and default else None
        if default is not None and default not in declared:
            self.problems.append(project.problem(("defaultSink",), _undeclared_sink(default, declared)))
        if project.data.get("pruneSecrets") is True:
            problem = _prune_secrets_problem(default, specs.get(default or ""))
            if problem:
                self.problems.append(project.problem(("pruneSecrets",), problem))
        self._check_file_sinks(project, specs)
        seen: dict[tuple[str, ...], _Use] = {}
        base = folder_of(project)
        resolved: dict[str, str] = {}  # one realpath per sink path, not one per client

        def resolve(path: str) -> str:
            if path not in resolved:
                resolved[path] = _resolved(path, base)
            return resolved[path]

        for server_name, (_, source) in servers.items():
            for client in source.clients:
                named = client.spec.secret.sink
                sink = named or default
                if sink is None:
                    self.problems.append(client.problem(("name",), _NO_SINK))
                elif named and named not in declared:
                    self.problems.append(
                        client.problem(("secret", "sink"), _undeclared_sink(named, declared))
                    )
                elif sink in declared:
                    self._check_destination(
                        client, server_name, sink=sink, spec=specs[sink], seen=seen, resolve=resolve
                    )

    def _check_file_sinks(self, project: Document, specs: Mapping[str, SinkSpec | None]) -> None:
        """File sink paths are usable, and two sinks that write one file (however it is spelt) agree
        on its format: JSON and dotenv entries cannot share a file."""
        first_by_file: dict[str, tuple[str, FileSinkSpec]] = {}
        for name, spec in specs.items():
            if not isinstance(spec, FileSinkSpec):
                continue
            if "\0" in spec.path:
                self.problems.append(project.problem(("sinks", name, "path"), "a path cannot contain NUL"))
                continue
            path = _resolved(spec.path, folder_of(project))
            first, first_spec = first_by_file.setdefault(path, (name, spec))
            if first_spec.format != spec.format:
                pos = project.position(("sinks", first, "path"))
                message = (
                    f"sink '{name}' writes {path} as {spec.format}, but sink '{first}' (at {project.file}:"
                    f"{pos.line}:{pos.column}) writes the same file as {first_spec.format}: a file holds "
                    "one format; give one of them another path"
                )
                self.problems.append(project.problem(("sinks", name, "path"), message))

    def _check_destination(
        self,
        client: _ClientSource,
        server_name: str,
        *,
        sink: str,
        spec: SinkSpec | None,
        seen: dict[tuple[str, ...], _Use],
        resolve: Callable[[str], str],
    ) -> None:
        """The client's secret stays inside its sink's prefix, and no earlier client's secret is
        written to the same place, compared as the sink will write it (see :func:`_destination`)."""
        key = secret_key(server_name, client.spec)
        refused = _key_problem(sink, spec, key)
        if refused is not None:
            where = ("secret", "key") if client.spec.secret.key else ("name",)
            self.problems.append(client.problem(where, refused))
            return
        identity, place = _destination(sink, spec, key, resolve=resolve)
        use = _Use(client, server_name, sink, key, place)
        first = seen.setdefault(identity, use)
        if first is not use:
            self.problems.append(client.problem(("secret",), _shared_destination(use, first=first)))

    def _check_reserved_tags(
        self, project: Document, servers: dict[str, tuple[ServerSpec, _ServerSource]]
    ) -> None:
        """Tags the reconciler keeps itself may not be written by hand: a plan could never settle. Nor
        may an ignore rule name the ownership tag: it would ignore every object the Project manages."""
        owner = project.data.get("ownershipTag")
        owner = owner if isinstance(owner, str) and owner else DEFAULT_OWNERSHIP_TAG
        rules = project.data.get("ignore")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            for key in ("ownershipTag", "tag"):
                if isinstance(rule, dict) and rule.get(key) == owner:
                    message = (
                        f"'{owner}' is this Project's own ownershipTag: an ignore rule naming it would "
                        "ignore every object the Project manages"
                    )
                    self.problems.append(project.problem(("ignore", i, key), message))
        for server, source in servers.values():
            for i, tag in enumerate(server.tags):
                if problem := reserved_tag_problem(tag, ownership_tag=owner):
                    self.problems.append(source.entry.doc.problem(("tags", i), problem))
            for client in source.clients:
                for i, tag in enumerate(client.spec.tags):
                    if problem := reserved_tag_problem(tag, ownership_tag=owner):
                        self.problems.append(client.problem(("tags", i), problem))

    def _check_policy(self, project: Document, servers: dict[str, tuple[ServerSpec, _ServerSource]]) -> None:
        """The policy names rules, parameters, servers and clients that exist, and each exception can
        apply (``reconciler.policy.policy_problems``). Read from the raw document, like the sinks, but
        only once its schema passes: the schema check has reported what is wrong with it (the same key
        twice would be noise), and the built Project lacks the broken parts, which shifts indexes."""
        raw = project.data.get("policy")
        if raw is None or any(
            issue.unusable[:1] == ("policy",) for issue in schema_issues(project, "Project")
        ):
            return
        try:
            spec = PolicySpec.model_validate(raw)
        except ModelError:
            return  # what the model refuses and the schema let by: building the Project reported it
        declared = {name: {client.name for client in server.clients} for name, (server, _) in servers.items()}
        for path, message in policy_problems(spec, self._known_rules(spec), declared):
            self.problems.append(project.problem(path, message, key=True))

    def _known_rules(self, spec: PolicySpec) -> Sequence[Rule]:
        if not callable(self.rules):
            return self.rules
        named = set(spec.rules) | {exception.rule for exception in spec.exceptions}
        return BUILTIN_RULES if named <= {rule.id for rule in BUILTIN_RULES} else self.rules()

    def _locations(
        self, servers: dict[str, tuple[ServerSpec, _ServerSource]]
    ) -> dict[tuple[str, ...], Location]:
        locations: dict[tuple[str, ...], Location] = {}
        for name, (_, source) in servers.items():
            locations[("server", name)] = _location(source.entry.doc, ())
            for client in source.clients:
                locations[("client", name, client.spec.name)] = _location(client.doc, client.base)
        return locations


@dataclass
class _ClientSource:
    """A client and where it was written: inline (base is its path) or its own document."""

    spec: ClientSpec
    doc: Document
    base: DocPath

    def problem(self, path: DocPath, message: str) -> Problem:
        return self.doc.problem((*self.base, *path), message)

    def where(self) -> str:
        pos = self.doc.position((*self.base, "name"))
        return f"{self.doc.file}:{pos.line}:{pos.column}"


@dataclass
class _ServerSource:
    entry: _Entry
    clients: list[_ClientSource]


@dataclass(frozen=True)
class _Use:
    """One client's secret destination, as written in its manifest and as its sink will write it."""

    client: _ClientSource
    server: str
    sink: str
    key: str
    place: str  # e.g. "the variable CRM_SYNC_BOT in /work/.secrets/agents.env"


_NO_SINK = "no secret sink: name one in secret.sink, or set defaultSink in the Project"
_SINK_SPEC: TypeAdapter[SinkSpec] = TypeAdapter(SinkSpec)


def _sink_spec(raw: Any) -> SinkSpec | None:
    """A sink's settings with their defaults; None when they are too broken to tell where it writes
    (the schema check reports why), and then only identical keys of that one sink collide."""
    try:
        return _SINK_SPEC.validate_python(raw)
    except ModelError:
        return None


def _destination(
    sink: str, spec: SinkSpec | None, key: str, *, resolve: Callable[[str], str]
) -> tuple[tuple[str, ...], str]:
    """Where ``key`` ends up, as an identity that is equal for two keys exactly when the sinks would
    write one place, and as words. It uses the sinks' own name functions (``env_name``,
    ``secret_name``, ``vault_path``), so validate and the sinks cannot disagree."""
    if isinstance(spec, FileSinkSpec):
        path = resolve(spec.path)  # see _resolved
        if spec.format == "dotenv":
            variable = env_name(key)
            return ("file", path, "dotenv", variable), f"the variable {variable} in {path}"
        return ("file", path, "json", key), f"the entry '{key}' in {path}"
    if isinstance(spec, VaultSinkSpec):
        url, namespace, mount = _url(spec.url), (spec.namespace or "").strip("/"), spec.mount.strip("/")
        path = posixpath.normpath("/" + vault_path(spec.pathPrefix, key=key)).lstrip("/")  # a//b, ./b
        at = url + (f" (namespace {namespace})" if namespace else "")
        return ("vault", url, namespace, mount, path), f"the Vault secret {mount}/{path} at {at}"
    if isinstance(spec, AwsSinkSpec):
        name, endpoint = spec.namePrefix + key, _url(spec.endpointUrl or "")
        at = spec.region + (f" at {endpoint}" if endpoint else "")
        return ("aws", spec.region, endpoint, name), f"the AWS secret {name} in {at}"
    if isinstance(spec, GithubSinkSpec):
        # GitHub compares repository, environment and secret names without regard to case.
        name, environment = secret_name(key), spec.environment or ""
        identity = ("github", _url(spec.apiUrl), spec.repository.lower(), environment.lower(), name)
        at = spec.repository + (f", environment {environment}" if environment else "")
        return identity, f"the GitHub secret {name} of {at}"
    return ("sink", sink, key), f"'{key}' in sink '{sink}'"  # a command sink: only its own keys known


def _key_problem(sink: str, spec: SinkSpec | None, key: str) -> str | None:
    """Why a Vault or AWS sink would refuse ``key`` (the sinks refuse it again when writing)."""
    if isinstance(spec, VaultSinkSpec):
        prefix = spec.pathPrefix.lstrip("/")
        reason = leaves_prefix(prefix, key=key)
        rule = "a key must stay below pathPrefix: no leading '/', no '..' segments"
        settings = f"vault, mount '{spec.mount.strip('/')}', pathPrefix '{prefix}'"
    elif isinstance(spec, AwsSinkSpec):
        reason = aws_name_problem(spec.namePrefix, key=key)
        rule = "a key must stay inside namePrefix: no leading '/', no '..' segments"
        settings = f"aws-secrets-manager, namePrefix '{spec.namePrefix}'"
    else:
        return None
    if reason is None:
        return None
    return f"secret key '{key}' is refused by sink '{sink}' ({settings}): {reason}; {rule}"


def _shared_destination(use: _Use, *, first: _Use) -> str:
    by = f"client '{first.client.spec.name}' at {first.client.where()}"
    if (use.sink, use.key) == (first.sink, first.key):
        return f"secret destination '{use.key}' in sink '{use.sink}' is already used by {by}"
    return (
        f"secret destination '{use.key}' in sink '{use.sink}' is already used by {by} (server "
        f"'{first.server}', key '{first.key}' in sink '{first.sink}'): both are written to {use.place}"
    )


def _resolved(path: str, base: Path) -> str:
    """A file sink's path as the file system resolves it (relative to ``base``, the folder of the
    Project's file, like the sink), so that ``.secrets/x.json``, ``./.secrets/x.json`` and a path
    through a symlinked folder are seen as one file."""
    joined = os.path.join(base, path)
    try:
        return os.path.realpath(joined)
    except (OSError, ValueError):
        return os.path.abspath(joined)


def folder_of(doc: Document) -> Path:
    """The folder of the file ``doc`` was read from, absolute: relative paths it declares count from
    here. (``doc.file`` is the path as found, relative to the working directory of this run.)"""
    return Path(os.path.abspath(doc.file)).parent


def _url(url: str) -> str:
    """A URL spelt one way: lower-case scheme and host, no default port, no trailing slash."""
    if not url:
        return ""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host += f":{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}" + (f"?{parts.query}" if parts.query else "")


def _inline(spec: StandaloneClientSpec) -> ClientSpec:
    data = spec.model_dump(exclude_unset=True, exclude={"kind", "server"})
    return ClientSpec.model_validate(data)


def _prune_secrets_problem(default: str | None, spec: SinkSpec | None) -> str:
    """Why ``pruneSecrets: true`` cannot work with the default sink, or ""."""
    if default is None:
        return "pruneSecrets removes a deleted client's secret from defaultSink: set defaultSink"
    if spec is not None and spec.type == "command":
        return (
            f"pruneSecrets cannot remove secrets from sink '{default}': a command sink has no way to "
            "remove one; remove them by hand, or make defaultSink a file, vault, aws-secrets-manager "
            "or github sink"
        )
    return ""


def _undeclared_sink(name: str, declared: set[str]) -> str:
    known = ", ".join(sorted(declared)) or "none are declared"
    return f"sink '{name}' is not declared in the Project's sinks ({known}){did_you_mean(name, declared)}"


def _kind_problem(doc: Document, kind: Any) -> Problem:
    kinds = ", ".join(KIND_SCHEMAS)
    if kind is None:
        return doc.problem((), f"missing 'kind' (one of {kinds})")
    hint = did_you_mean(str(kind), set(KIND_SCHEMAS))
    return doc.problem(("kind",), f"unknown kind {kind!r}{hint}; expected one of {kinds}")


def _where(entry: _Entry) -> str:
    return f"{entry.doc.file}:{entry.doc.start.line}:{entry.doc.start.column}"


def _location(doc: Document, base: DocPath) -> Location:
    pos = doc.position(base)
    return Location(doc.file, pos.line, pos.column)


def control_character_warnings(manifest: Manifest) -> list[str]:
    """``FILE:LINE:COL: warning: ...`` for each server or client name, approved scope name or tag that
    holds a control, bidi or line separator character: valid, but it can rewrite or reorder what a
    terminal or a reviewer sees where it is shown as it is (mcp-reconciler shows it escaped). Located
    at the object that holds it: a Manifest keeps no finer positions."""
    from reconciler.textsafe import visible  # noqa: PLC0415 - needed by this function alone

    def unsafe(*texts: str) -> bool:
        return any(visible(text) != text for text in texts)

    texts: list[tuple[Location | None, str, str, str]] = []  # where, object, field ("" for its name), text
    for server in manifest.servers:
        names = [scope.name for scope in server.approvedScopes]
        if unsafe(server.name, *server.tags, *names):  # most manifests hold none: skip the rest
            where = manifest.locations.get(("server", server.name))
            address = f'server "{visible(server.name)}"'
            texts.append((where, address, "", server.name))
            texts += [(where, address, f"tags[{i}]", tag) for i, tag in enumerate(server.tags)]
            texts += [(where, address, f"approvedScopes[{i}].name", name) for i, name in enumerate(names)]
        for client in server.clients:
            if not unsafe(server.name, client.name, *client.tags):
                continue
            where = manifest.locations.get(("client", server.name, client.name))
            address = f'client "{visible(server.name)}/{visible(client.name)}"'
            texts.append((where, address, "", client.name))
            texts += [(where, address, f"tags[{i}]", tag) for i, tag in enumerate(client.tags)]
    warnings: list[tuple[tuple[str, int, int], str]] = []
    for where, address, field, text in texts:
        found = dict.fromkeys(visible(char) for char in text if visible(char) != char)
        if not found:
            continue
        shown = f'{field} "{visible(text)}"' if field else "its name"
        message = (
            f"warning: {address}: {shown} holds control or bidi characters ({', '.join(found)}), which "
            "can rewrite or reorder text where it is shown as it is; mcp-reconciler shows them escaped"
        )
        place = (where.file, where.line, where.column) if where else ("", 0, 0)
        warnings.append((place, visible(f"{where}: {message}" if where else message)))
    return [line for _, line in sorted(warnings, key=lambda item: item[0])]
