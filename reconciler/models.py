"""Pydantic models of the manifest kinds; field names are the Descope API's own (camelCase).

The models are built only from documents that already passed the JSON Schemas in ``schemas/``, so
they carry no validation of their own beyond types: the schemas are the single source of the rules,
and ``tests/test_schemas.py`` proves the two agree. ``model_fields_set`` records which fields a
manifest mentions, because fields it does not mention are left alone on the live object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_OWNERSHIP_TAG = "managed-by:mcp-reconciler"
# The manifest format: a document may say so in an optional ``apiVersion``; any other value is refused
# (reconciler.schemas.api_version_problem), never read by the rules of this one.
API_VERSION = "mcp-reconciler/v1"
API_VERSIONS = (API_VERSION,)
DEFAULT_MAX_DELETES = 10

TimeUnit = Literal["seconds", "minutes", "hours", "days", "weeks"]
# The management surface of an MCP server: the MCP Server API, or Resources of type mcp.
SurfaceName = Literal["mcp-servers", "resources"]


class Spec(BaseModel):
    """Base of all manifest models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def mentioned(self, exclude: AbstractSet[str] = frozenset()) -> dict[str, Any]:
        """The fields the manifest set, as API-shaped JSON (nested unset fields left out), without the
        fields named in ``exclude`` (never serialized: a server's clients are not dumped with it)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude=set(exclude) or None)


ScopeCategory = Literal["permissions", "attributes", "connections"]


class Scope(Spec):
    name: str
    description: str = ""
    optional: bool = False
    category: ScopeCategory | None = None  # None: settled by reconciler.scopes.settle_categories
    values: tuple[str, ...] | None = None


class DynamicRegistration(Spec):
    enabled: bool = False
    disableApprovedScopesAsDefault: bool = False
    flowId: str = ""


class SessionSettings(Spec):
    enabled: bool = False
    sessionTokenExpiration: int = 0
    sessionTokenExpirationUnit: TimeUnit | None = None
    refreshTokenExpiration: int = 0
    refreshTokenExpirationUnit: TimeUnit | None = None
    keySessionTokenExpiration: int = 0
    keySessionTokenExpirationUnit: TimeUnit | None = None
    userTemplateId: str = ""
    keyTemplateId: str = ""


class DomainPolicy(Spec):
    domainPattern: str
    enabled: bool = False


class DomainPolicies(Spec):
    policies: tuple[DomainPolicy, ...] = ()


class CimdSettings(Spec):
    enabled: bool = False
    domainPolicies: DomainPolicies = DomainPolicies()


class SecretRef(Spec):
    sink: str | None = None
    key: str | None = None
    rotation: str | int | None = None


class ClientSpec(Spec):
    """A pre-registered client, inline under its server or in its own document."""

    name: str
    scopes: tuple[str, ...] = ()
    approvedCallbackUrls: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    logo: str = ""
    forceAddAllAuthorizationInfo: bool = False
    allowedTenants: tuple[str, ...] = ()
    secret: SecretRef = SecretRef()
    protect: bool = False
    adopt: bool = False


class StandaloneClientSpec(ClientSpec):
    """A ``kind: MCPServerClient`` document: a client naming its server."""

    # Which manifest format the document is written in: metadata, never a field of the live object, so
    # left out of every dump (payloads, provenance digests).
    apiVersion: str | None = Field(default=None, exclude=True)
    kind: Literal["MCPServerClient"]
    server: str


class ServerSpec(Spec):
    """A ``kind: MCPServer`` document."""

    apiVersion: str | None = Field(default=None, exclude=True)  # metadata, as in StandaloneClientSpec
    kind: Literal["MCPServer"]
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    logo: str = ""
    audienceWhitelist: tuple[str, ...] = ()
    approvedScopes: tuple[Scope, ...] = ()
    approvedCallbackUrls: tuple[str, ...] = ()
    dynamicRegistration: DynamicRegistration = DynamicRegistration()
    skipConsentScreen: bool = False
    consentFlowId: str = ""
    consentFlowHostingURL: str = ""
    loginPageURL: str = ""
    sessionSettings: SessionSettings = SessionSettings()
    cimdSettings: CimdSettings = CimdSettings()
    forceAddAllAuthorizationInfo: bool = False
    surface: SurfaceName | None = None  # None: where it lives; a new server: the Project's surface
    protect: bool = False
    adopt: bool = False
    clients: tuple[ClientSpec, ...] = ()


class FileSinkSpec(Spec):
    type: Literal["file"]
    path: str
    format: Literal["json", "dotenv"] = "json"


class CommandSinkSpec(Spec):
    type: Literal["command"]
    command: tuple[str, ...]
    timeoutSeconds: float = 30
    env: tuple[str, ...] = ()


class VaultSinkSpec(Spec):
    type: Literal["vault"]
    url: str
    mount: str = "secret"
    pathPrefix: str = ""
    namespace: str | None = None
    tokenEnv: str = "VAULT_TOKEN"


class AwsSinkSpec(Spec):
    type: Literal["aws-secrets-manager"]
    region: str
    endpointUrl: str | None = None
    namePrefix: str = ""
    kmsKeyId: str | None = None


class GithubSinkSpec(Spec):
    type: Literal["github"]
    repository: str
    environment: str | None = None
    apiUrl: str = "https://api.github.com"
    tokenEnv: str = "GITHUB_TOKEN"


SinkSpec = Annotated[
    FileSinkSpec | CommandSinkSpec | VaultSinkSpec | AwsSinkSpec | GithubSinkSpec,
    Field(discriminator="type"),
]


IGNORE_KEYS = ("ownershipTag", "tag", "name")  # an ignore rule sets exactly one (the schema says so)


class IgnoreRule(Spec):
    """One of the Project's ``ignore`` rules: live objects that are someone else's, by another
    reconciler's ownership tag, by a tag, or by a name pattern (see ``reconciler.ignore``)."""

    ownershipTag: str | None = None
    tag: str | None = None
    name: str | None = None  # an fnmatch pattern of the path: "server", or "server/client"

    @property
    def key(self) -> str:
        """Which of ``IGNORE_KEYS`` the rule sets ("" for none: such a rule matches nothing)."""
        return next((key for key in IGNORE_KEYS if getattr(self, key) is not None), "")

    @property
    def value(self) -> str:
        return str(getattr(self, self.key)) if self.key else ""


# The severities of security findings, mildest first: the same as ``reconciler.findings.Severity``,
# written out again because that module imports this one (a test holds the two to each other).
Severity = Literal["low", "medium", "high", "critical"]


class RuleSetting(Spec):
    """A team's setting of one security rule, under the policy's ``rules``: off, another severity,
    other parameters (names and minimums are the rule's own, checked by ``reconciler.policy``)."""

    enabled: bool = True
    severity: Severity | None = None  # None: the rule's own
    params: dict[str, int] = Field(default_factory=dict)


class PolicyExceptionSpec(Spec):
    """A finding the team accepts: one rule on one server and all its clients, or on one client."""

    rule: str
    server: str
    client: str | None = None  # None: the server and every client of it
    reason: str

    @field_validator("reason")
    @classmethod
    def _reason_says_something(cls, reason: str) -> str:
        # The one check a model makes beyond types (the schema makes it too): a reason is what a
        # reviewer reads instead of the finding, so a policy built in code needs one as well.
        if not reason.strip():
            raise ValueError("a reason must say why the finding is accepted, not be empty or white space")
        return reason


class PolicySpec(Spec):
    """The Project's ``policy``: how the security rules judge these manifests (``reconciler.policy``)."""

    failOn: Literal["low", "medium", "high", "critical", "never"] | None = None  # None: each command's own
    rules: dict[str, RuleSetting] = Field(default_factory=dict)
    exceptions: tuple[PolicyExceptionSpec, ...] = ()


class ProjectSpec(Spec):
    """The ``kind: Project`` document: settings of the reconciled Descope project."""

    apiVersion: str | None = Field(default=None, exclude=True)  # metadata, as in StandaloneClientSpec
    kind: Literal["Project"]
    projectId: str
    ownershipTag: str = DEFAULT_OWNERSHIP_TAG
    prune: bool = False
    pruneSecrets: bool = False  # a deleted client's secret is removed from the default sink
    maxDeletes: int | str = DEFAULT_MAX_DELETES
    scopesFormat: Literal["categorized", "list"] = "categorized"
    surface: SurfaceName = "mcp-servers"  # where new MCP servers are created
    defaultSink: str | None = None
    sinks: dict[str, SinkSpec] = Field(default_factory=dict)
    ignore: tuple[IgnoreRule, ...] = ()  # live objects that are someone else's: never planned or drift
    # How the security rules judge the manifests; never sent to the API, but part of the digest of the
    # "project settings" (reconciler.provenance): a saved plan's findings were judged under it.
    policy: PolicySpec | None = None

    def sink_settings(self) -> dict[str, dict[str, Any]]:
        """Each sink's settings as written (no tokens ever live here), for digests; sinks are built
        from ``Manifest.sink_settings``, which resolves their relative paths."""
        return {name: sink.mentioned() for name, sink in self.sinks.items()}


KIND_MODELS: dict[str, type[Spec]] = {
    "Project": ProjectSpec,
    "MCPServer": ServerSpec,
    "MCPServerClient": StandaloneClientSpec,
}


@dataclass(frozen=True)
class Location:
    """Where an object was declared, for messages raised after loading."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Manifest:
    """The desired state: the Project settings and every server, each with all of its clients."""

    project: ProjectSpec
    servers: tuple[ServerSpec, ...]
    locations: Mapping[tuple[str, ...], Location]
    # The folder of the file that holds the Project document, absolute: relative paths the Project
    # declares (a file sink's path, a command sink's program) count from here, and the state folder
    # (the journal) lives here. None for a Manifest built in code: the working directory.
    folder: Path | None = None

    def server(self, name: str) -> ServerSpec | None:
        return next((s for s in self.servers if s.name == name), None)

    @property
    def base(self) -> Path:
        """``folder``, or the working directory (absolute) when the Manifest was not loaded from files."""
        return self.folder if self.folder is not None else Path(os.path.abspath(os.curdir))

    def sink_settings(self) -> dict[str, dict[str, Any]]:
        """Each sink's settings (``ProjectSpec.sink_settings``) with its relative paths resolved
        against the Project's folder (see :func:`resolve_sink_paths`): what the sinks are built from."""
        return {
            name: resolve_sink_paths(settings, self.base)
            for name, settings in self.project.sink_settings().items()
        }

    def sink_label(self, name: str) -> str:
        """``name``, with the local path it uses, resolved (:func:`sink_place`): ``local
        (/abs/.secrets/clients.json)``; for messages (sink settings hold no secrets)."""
        settings = self.sink_settings().get(name)
        place = sink_place(settings) if settings is not None else ""
        return f"{name} ({place})" if place else name


def resolve_sink_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A sink's settings with each relative path made absolute against ``base`` (the folder of the
    manifest that declares the sink), never against the working directory: a file sink's ``path``, and
    a command sink's program (``command[0]``) when it names a path (holds a ``/``; a bare name is looked
    up on PATH). Variables were substituted when the manifest was read; absolute paths stay as they
    are; ``~`` is not expanded (it never was)."""
    resolved = dict(settings)
    kind = settings.get("type")
    path = settings.get("path")
    if kind == "file" and isinstance(path, str) and path and "\0" not in path:
        resolved["path"] = os.path.abspath(os.path.join(base, path))
    command = settings.get("command")
    if kind == "command" and isinstance(command, list | tuple) and command:
        program = command[0]
        if isinstance(program, str) and os.sep in program and "\0" not in program:
            resolved["command"] = [os.path.abspath(os.path.join(base, program)), *command[1:]]
    return resolved


def sink_place(settings: Mapping[str, Any]) -> str:
    """The local path a sink with these (resolved) settings uses: a file sink's file, a command sink's
    program when given as a path; "" for the others (their messages name their own places)."""
    kind = settings.get("type")
    if kind == "file":
        return str(settings.get("path", ""))
    command = settings.get("command") or ("",)
    if kind == "command" and isinstance(command[0], str) and os.path.isabs(command[0]):
        return f"runs {command[0]}"
    return ""


def secret_key(server_name: str, client: ClientSpec) -> str:
    """The key a client's secret is stored under in its sink: explicit, or ``server/client``."""
    return client.secret.key or f"{server_name}/{client.name}"
