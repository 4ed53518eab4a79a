"""The kinds of object mcp-reconciler manages, as data: identity, parent, fields, endpoints, order (pure).

Every module that handles objects reads the kind's descriptor instead of branching on the kind: the
planner walks the desired tree and the live one through :func:`desired_objects` and
:attr:`KindDescriptor.live_under`, the differ normalizes by the kind's :class:`FieldShapes`, and the
applier and the planner order changes by :func:`level`. A descriptor's :attr:`KindDescriptor.endpoints`
are tables of ``reconciler.descope.endpoints``, where the API client takes each call's method and path.
Adding a kind means adding a descriptor here (and its endpoints and wire mapping in
``reconciler.descope``); ``tests/test_kinds.py`` says what a descriptor is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

from reconciler.descope import assumptions
from reconciler.descope.endpoints import CLIENT_ENDPOINTS, MCP_SERVER_ENDPOINTS, RESOURCE_ENDPOINTS, Endpoints
from reconciler.descope.wire import LiveState, Surface
from reconciler.models import ClientSpec, Manifest, SecretRef, ServerSpec, Spec
from reconciler.scopes import ScopesFormat, settle_categories

# A value as JSON holds it: what the API sends and takes, and what a change's desired fields are.
JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"


class Kind(StrEnum):
    SERVER = "server"
    CLIENT = "client"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    ADOPT = "adopt"
    ROTATE_SECRET = "rotate-secret"  # noqa: S105 - an action's name, not a password
    DELETE = "delete"


# The actions that put a client secret in our hands, for a kind that holds one.
SECRET_ACTIONS = frozenset({Action.CREATE, Action.ROTATE_SECRET, Action.ADOPT})


@dataclass(frozen=True)
class KeyedList:
    """A list of objects compared item by item, each named by ``key``; missing attributes read as
    ``defaults``; ``sets`` are attributes of an item compared as sorted lists."""

    key: str
    defaults: Mapping[str, Any]
    sets: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FieldShapes:
    """How a kind's fields are compared: which are set-like lists, which are keyed lists (by path)."""

    sets: frozenset[tuple[str, ...]] = frozenset()
    keyed: Mapping[tuple[str, ...], KeyedList] = field(default_factory=lambda: MappingProxyType({}))

    def keyed_at(self, path: tuple[str, ...]) -> KeyedList | None:
        return self.keyed.get(path)

    def is_set(self, path: tuple[str, ...]) -> bool:
        return path in self.sets


class LiveObject(Protocol):
    """What every live object offers the planner, whatever its kind."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def surface(self) -> Surface | None: ...  # for a kind with surfaces: the one it lives on


@dataclass(frozen=True)
class Desired:
    """One object of the manifests, ready to plan: its place, its API fields and its manifest-only
    settings. ``path`` names it from the root (``("calendar",)``, ``("calendar", "ci-agent")``)."""

    kind: Kind
    path: tuple[str, ...]
    fields: Mapping[str, JsonValue]
    protect: bool
    adopt: bool
    secret: SecretRef | None
    children: tuple[Desired, ...] = ()
    surface: Surface | None = None  # stated by the manifest, for a kind with surfaces

    @property
    def name(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class KindDescriptor:
    """Everything about one kind that code would otherwise branch on."""

    kind: Kind
    plural: str  # for people: "servers", "clients"
    parent: Kind | None
    shapes: FieldShapes
    manifest_only: frozenset[str]  # manifest settings that are never sent to the API
    read_only: frozenset[str]  # fields the API assigns; never created or compared
    endpoints: Endpoints
    live_under: Callable[[LiveState, str | None], Sequence[LiveObject]]  # (live, parent id)
    # The desired fields as they will be written, given the live object (None before a create) and
    # the project's scope format: what a manifest leaves to the live object filled in.
    settle: Callable[
        [Mapping[str, JsonValue], Mapping[str, Any] | None, ScopesFormat], dict[str, JsonValue]
    ] = lambda fields, _live, _shape: dict(fields)
    # The management surfaces its objects may live on, each with its endpoints; none: one surface.
    surfaces: Mapping[Surface, Endpoints] = field(default_factory=lambda: MappingProxyType({}))
    # Surfaces whose scopes have one shape whatever the project's (a Resource's are categorized).
    surface_scopes: Mapping[Surface, ScopesFormat] = field(default_factory=lambda: MappingProxyType({}))
    holds_secret: bool = False  # creating, adopting or rotating it puts a secret in our hands
    # Deleting it deletes the objects below it; else the plan deletes them first, one by one.
    delete_cascades: bool = False

    def payload(self, spec: Spec) -> dict[str, Any]:
        """The API fields a manifest entry states (manifest-only settings left out)."""
        return {k: v for k, v in spec.mentioned(self.manifest_only).items() if k not in self.manifest_only}


# ---- the kinds ---------------------------------------------------------------------------------

SCOPE_DEFAULTS: Mapping[str, Any] = MappingProxyType({"description": "", "optional": False, "values": []})


def _settle_server(
    fields: Mapping[str, JsonValue], live: Mapping[str, Any] | None, shape: ScopesFormat
) -> dict[str, JsonValue]:
    """A server's desired fields with every approved scope's category settled (``reconciler.scopes``)."""
    scopes = fields.get("approvedScopes")
    if not isinstance(scopes, list):
        return dict(fields)
    items = [item for item in scopes if isinstance(item, dict)]
    live_items = (live or {}).get("approvedScopes") or []
    settled: list[JsonValue] = list(settle_categories(items, live_items, shape))
    return {**fields, "approvedScopes": settled}


SERVER = KindDescriptor(
    kind=Kind.SERVER,
    plural="servers",
    parent=None,
    shapes=FieldShapes(
        sets=frozenset({("tags",), ("audienceWhitelist",), ("approvedCallbackUrls",)}),
        keyed=MappingProxyType(
            {
                ("approvedScopes",): KeyedList("name", SCOPE_DEFAULTS, frozenset({"values"})),
                ("cimdSettings", "domainPolicies", "policies"): KeyedList(
                    "domainPattern", MappingProxyType({"enabled": False})
                ),
            }
        ),
    ),
    manifest_only=frozenset({"kind", "protect", "adopt", "clients", "surface"}),
    read_only=frozenset({"id"}),
    endpoints=MCP_SERVER_ENDPOINTS,
    live_under=lambda live, _parent: live.servers,
    settle=_settle_server,
    surfaces=MappingProxyType({"mcp-servers": MCP_SERVER_ENDPOINTS, "resources": RESOURCE_ENDPOINTS}),
    surface_scopes=MappingProxyType({"resources": "categorized"}),
    delete_cascades=assumptions.SERVER_DELETE_CASCADES,
)

CLIENT = KindDescriptor(
    kind=Kind.CLIENT,
    plural="clients",
    parent=Kind.SERVER,
    shapes=FieldShapes(
        sets=frozenset({("tags",), ("scopes",), ("approvedCallbackUrls",), ("allowedTenants",)})
    ),
    manifest_only=frozenset({"kind", "server", "protect", "adopt", "secret"}),
    read_only=frozenset({"id", "clientId", "mcpServerId", "registrationType", "status"}),
    endpoints=CLIENT_ENDPOINTS,
    live_under=lambda live, parent: live.clients_of(parent or ""),
    holds_secret=True,
)

KINDS: Mapping[Kind, KindDescriptor] = MappingProxyType({d.kind: d for d in (SERVER, CLIENT)})


def descriptor(kind: Kind) -> KindDescriptor:
    return KINDS[kind]


def children(kind: Kind) -> tuple[KindDescriptor, ...]:
    """The kinds whose parent is ``kind``."""
    return tuple(d for d in KINDS.values() if d.parent is kind)


def roots() -> tuple[KindDescriptor, ...]:
    return tuple(d for d in KINDS.values() if d.parent is None)


def lineage(kind: Kind) -> tuple[KindDescriptor, ...]:
    """``kind`` and its ancestors, root first: the kinds a path of ``kind`` names, one per part."""
    chain = [KINDS[kind]]
    while chain[0].parent is not None:
        chain.insert(0, KINDS[chain[0].parent])
    return tuple(chain)


def depth(kind: Kind) -> int:
    return len(lineage(kind)) - 1


# ---- order -------------------------------------------------------------------------------------

_WRITES = (Action.CREATE, Action.ADOPT, Action.UPDATE)


def level(kind: Kind, action: Action) -> int:
    """When a change runs, derived from the parents: creates, adoptions and updates parents first,
    then secret rotations (after every update they could depend on), then deletes children first."""
    tiers = 1 + max(depth(k) for k in KINDS)
    if action in _WRITES:
        return depth(kind)
    if action is Action.ROTATE_SECRET:
        return tiers + depth(kind)
    return 2 * tiers + (tiers - 1 - depth(kind))


def depends_on(path: tuple[str, ...], kind: Kind, *, on_path: tuple[str, ...], on_kind: Kind) -> bool:
    """Whether the object ``(kind, path)`` is ``(on_kind, on_path)`` or lies below it: what a change
    of the latter's failure holds back (a client's changes after its server's, a rotation after the
    client's update), and what a target covers."""
    ancestry = lineage(kind)
    return (
        0 < len(on_path) <= len(path)
        and path[: len(on_path)] == on_path
        and ancestry[len(on_path) - 1].kind is on_kind
    )


# ---- the desired tree and the live one ---------------------------------------------------------


def desired_objects(manifest: Manifest) -> tuple[Desired, ...]:
    """The manifests' objects as a tree of :class:`Desired`, roots first."""
    return tuple(_desired_server(spec) for spec in manifest.servers)


def _desired_server(spec: ServerSpec) -> Desired:
    return Desired(
        Kind.SERVER,
        (spec.name,),
        SERVER.payload(spec),
        protect=spec.protect,
        adopt=spec.adopt,
        secret=None,
        children=tuple(_desired_client(spec.name, client) for client in spec.clients),
        surface=spec.surface,
    )


def _desired_client(server: str, spec: ClientSpec) -> Desired:
    return Desired(
        Kind.CLIENT,
        (server, spec.name),
        {**CLIENT.payload(spec), "name": spec.name},
        protect=spec.protect,
        adopt=spec.adopt,
        secret=spec.secret,
    )


def registered_elsewhere(obj: LiveObject) -> str | None:
    """How an object was registered when someone other than an administrator made it (an end user's
    client, registered dynamically or through CIMD): never managed, exported or reported as drift."""
    registration = str(obj.fields.get("registrationType") or "")
    if registration in ("", assumptions.REGISTRATION_PRE_REGISTERED):
        return None
    return registration


def live_objects(live: LiveState) -> list[tuple[Kind, tuple[str, ...], LiveObject]]:
    """Every live object the state holds, each with its kind and its path of names from the root."""
    found: list[tuple[Kind, tuple[str, ...], LiveObject]] = []

    def walk(kinds: Sequence[KindDescriptor], parent: LiveObject | None, path: tuple[str, ...]) -> None:
        for kind in kinds:
            for obj in kind.live_under(live, parent.id if parent else None):
                found.append((kind.kind, (*path, obj.name), obj))
                walk(children(kind.kind), obj, (*path, obj.name))

    walk(roots(), None, ())
    return found


def desired_paths(objects: Sequence[Desired]) -> list[tuple[Kind, tuple[str, ...]]]:
    """Every object of a desired tree, as its kind and path."""
    found: list[tuple[Kind, tuple[str, ...]]] = []
    for obj in objects:
        found.append((obj.kind, obj.path))
        found.extend(desired_paths(obj.children))
    return found
