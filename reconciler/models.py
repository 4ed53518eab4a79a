"""Pydantic models of the manifest kinds; field names are the Descope API's own (camelCase).

The models are built only from documents that already passed the JSON Schemas in ``schemas/``, so
they carry no validation of their own beyond types: the schemas are the single source of the rules,
and ``tests/test_schemas.py`` proves the two agree. ``model_fields_set`` records which fields a
manifest mentions, because fields it does not mention are left alone on the live object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_OWNERSHIP_TAG = "managed-by:mcp-reconciler"
DEFAULT_MAX_DELETES = 10

TimeUnit = Literal["seconds", "minutes", "hours", "days", "weeks"]
# The management surface of an MCP server: the MCP Server API, or Resources of type mcp.
SurfaceName = Literal["mcp-servers", "resources"]


class Spec(BaseModel):
    """Base of all manifest models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def mentioned(self) -> dict[str, Any]:
        """The fields the manifest set, as API-shaped JSON (nested unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


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

    kind: Literal["MCPServerClient"]
    server: str


class ServerSpec(Spec):
    """A ``kind: MCPServer`` document."""

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


class ProjectSpec(Spec):
    """The ``kind: Project`` document: settings of the reconciled Descope project."""

    kind: Literal["Project"]
    projectId: str
    ownershipTag: str = DEFAULT_OWNERSHIP_TAG
    prune: bool = False
    maxDeletes: int | str = DEFAULT_MAX_DELETES
    scopesFormat: Literal["categorized", "list"] = "categorized"
    surface: SurfaceName = "mcp-servers"  # where new MCP servers are created
    defaultSink: str | None = None
    sinks: dict[str, SinkSpec] = Field(default_factory=dict)
    ignore: tuple[IgnoreRule, ...] = ()  # live objects that are someone else's: never planned or drift

    def sink_settings(self) -> dict[str, dict[str, Any]]:
        """Each sink's settings as written (no tokens ever live here), for plans and build_sinks."""
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

    def server(self, name: str) -> ServerSpec | None:
        return next((s for s in self.servers if s.name == name), None)


def secret_key(server_name: str, client: ClientSpec) -> str:
    """The key a client's secret is stored under in its sink: explicit, or ``server/client``."""
    return client.secret.key or f"{server_name}/{client.name}"
