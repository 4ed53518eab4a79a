"""The emulator's objects: MCP servers, Resources and their clients; validation, operations, state file.

Objects keep every field the caller sent, unknown ones included, so that a client of the API can prove
it round-trips them. ``approvedScopes`` is kept as the flat list of ``reconciler.scopes`` (remembering
categories) and written in the configured shape on the way out; a Resource's ``scopes`` is kept as the
categorized object it always is. Secrets live beside a client's fields, never among them, so that no
view of a client can carry one by accident.

A client belongs to an owner: an MCP server (``MS…``) or a Resource of type mcp (``RS…``), both named
by ``mcpServerId`` on the client endpoints. The Resource operations themselves are in
``reconciler.emulator.resources``.
"""

from __future__ import annotations

import json
import secrets
import stat
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.descope import assumptions
from reconciler.files import write_atomically
from reconciler.scopes import CATEGORY_KEY, read_scopes

STATE_FILE_VERSION = 1
ALPHANUMERIC = string.ascii_letters + string.digits
ID_LENGTH = 27

# Set by the emulator, never by a caller: kept across full-replacement updates, ignored on create.
SERVER_READ_ONLY = ("id",)
CLIENT_READ_ONLY = ("id", "clientId", "mcpServerId", "registrationType", "status")
# A secret is never a field: a caller sending one would otherwise see it echoed in every view.
CLIENT_SECRET_KEYS = ("secret", "cleartext")

# Known field types. A spec is a type, [spec] for an array of it, or {key: spec} for an object whose
# other keys are free. approvedScopes has two shapes and is checked on its own.
SCOPE_ITEM = {"name": str, "description": str, "optional": bool, "values": [str]}
DOMAIN_POLICY = {"domainPattern": str, "enabled": bool}
SESSION_SETTINGS: dict[str, Any] = {"enabled": bool, "userTemplateId": str, "keyTemplateId": str}
for _token in ("session", "refresh", "keySession"):
    SESSION_SETTINGS |= {f"{_token}TokenExpiration": int, f"{_token}TokenExpirationUnit": str}
SERVER_SPEC: dict[str, Any] = {
    **dict.fromkeys(("id", "name", "description", "logo", "loginPageURL"), str),
    **dict.fromkeys(("consentFlowId", "consentFlowHostingURL"), str),
    **{key: [str] for key in ("tags", "audienceWhitelist", "approvedCallbackUrls")},
    **dict.fromkeys(("skipConsentScreen", "forceAddAllAuthorizationInfo"), bool),
    "dynamicRegistration": {"enabled": bool, "disableApprovedScopesAsDefault": bool, "flowId": str},
    "cimdSettings": {"enabled": bool, "domainPolicies": {"policies": [DOMAIN_POLICY]}},
    "sessionSettings": SESSION_SETTINGS,
}
# A Resource: the fields of Descope's API reference. `scopes` is the categorized object only and is
# checked on its own. `id`, `version`, `createdTime` and `modifiedTime` are the server's.
RESOURCE_SERVER_FIELDS = ("id", "version", "createdTime", "modifiedTime")
RESOURCE_TYPE_MCP = "mcp"  # documented: "Only meaningful when the parent Resource has type=mcp"
RESOURCE_SPEC: dict[str, Any] = {
    **dict.fromkeys(RESOURCE_SERVER_FIELDS, str),
    **dict.fromkeys(("name", "description", "uri", "type", "userAccess", "clientAccess"), str),
    "dynamicRegistrationSettings": {
        "dynamicRegistration": SERVER_SPEC["dynamicRegistration"],
        "cimdSettings": SERVER_SPEC["cimdSettings"],
        "dynamicRegistrationTemplateId": str,
        "useTemplate": bool,
        "loginPageURL": str,
        "skipConsentScreen": bool,
        "forceAddAllAuthorizationInfo": bool,
        "tags": [str],
        "sessionSettings": SESSION_SETTINGS,
    },
}
CLIENT_SPEC: dict[str, Any] = {
    **dict.fromkeys(("id", "clientId", "mcpServerId", "registrationType", "status"), str),
    **dict.fromkeys(("name", "description", "logo"), str),
    **{key: [str] for key in ("approvedCallbackUrls", "scopes", "tags", "allowedTenants")},
    "forceAddAllAuthorizationInfo": bool,
}
# The keys of the categorized approvedScopes object on the wire (reconciler.scopes converts the shapes).
SCOPE_CATEGORIES = ("permissionsScopes", "attributesScopes", "connectionsScopes")
JSON_KINDS = {bool: "a boolean", int: "an integer", str: "a string", list: "an array", dict: "an object"}


class ApiFailure(Exception):
    """A request the API refuses: the status and error code of the body the emulator answers with."""

    def __init__(self, status: int, code: str, *, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def missing(description: str) -> ApiFailure:
    return ApiFailure(
        assumptions.STATUS_BAD_REQUEST, assumptions.MISSING_ARGUMENTS_CODE, description=description
    )


def invalid(description: str) -> ApiFailure:
    return ApiFailure(
        assumptions.STATUS_BAD_REQUEST, assumptions.VALIDATION_FAILURE_CODE, description=description
    )


def not_found(description: str) -> ApiFailure:
    return ApiFailure(
        assumptions.STATUS_NOT_FOUND, assumptions.INVALID_ARGUMENTS_CODE, description=description
    )


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number"
    return JSON_KINDS.get(type(value), type(value).__name__)


def check(value: Any, spec: Any, path: str) -> None:
    """Raise a validation failure naming ``path`` when ``value`` does not fit ``spec``."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise invalid(f"{path}: expected an object, got {json_kind(value)}")
        for key, sub in spec.items():
            # null is a field's zero value, as protobuf JSON has it.
            if value.get(key) is not None:
                check(value[key], sub, f"{path}.{key}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise invalid(f"{path}: expected an array, got {json_kind(value)}")
        for index, item in enumerate(value):
            check(item, spec[0], f"{path}[{index}]")
    elif isinstance(value, bool) != (spec is bool) or not isinstance(value, spec):
        raise invalid(f"{path}: expected {JSON_KINDS[spec]}, got {json_kind(value)}")


def check_scopes(value: Any, path: str) -> None:
    """Either published shape of approvedScopes; an unknown category is refused rather than dropped."""
    if value is None or isinstance(value, list):
        check(value or [], [SCOPE_ITEM], path)
        return
    if not isinstance(value, dict):
        raise invalid(f"{path}: expected an array or an object, got {json_kind(value)}")
    for category, items in value.items():
        if category not in SCOPE_CATEGORIES:
            expected = ", ".join(SCOPE_CATEGORIES)
            raise invalid(f"{path}.{category}: unknown category (expected one of {expected})")
        check(items or [], [SCOPE_ITEM], f"{path}.{category}")


def optional_str(body: dict[str, Any], key: str, path: str | None = None) -> str | None:
    """A string argument; "" counts as absent, as a protobuf zero value does."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"{path or key}: expected a string, got {json_kind(value)}")
    return value


def required_str(body: dict[str, Any], key: str, path: str | None = None) -> str:
    value = optional_str(body, key, path)
    if value is None:
        raise missing(f"{path or key} is required")
    return value


def id_list(body: dict[str, Any], key: str) -> list[str]:
    if body.get(key) is None:
        raise missing(f"{key} is required")
    check(body[key], [str], key)
    return list(body[key])


def server_fields(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """The stored fields of a server payload: validated, scopes in the internal flat form, no id."""
    check(payload, SERVER_SPEC, path)
    check_scopes(payload.get("approvedScopes"), f"{path}.approvedScopes")
    required_str(payload, "name", f"{path}.name")
    fields = {k: v for k, v in payload.items() if k not in SERVER_READ_ONLY}
    if fields.get("approvedScopes") is not None:
        items, shape = read_scopes(fields["approvedScopes"])
        # A list has no categories: a key in an item that looks like one must not pick it.
        keep = shape != "list"
        fields["approvedScopes"] = [{k: v for k, v in i.items() if keep or k != CATEGORY_KEY} for i in items]
    return fields


def resource_fields(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """The client-settable fields of a Resource payload, unknown ones included: their shapes checked
    (the rules of a create or update are ``reconciler.emulator.resources``'), the server's fields left out."""
    check(payload, RESOURCE_SPEC, path)
    scopes = payload.get("scopes")
    if scopes is not None and not isinstance(scopes, dict):
        raise invalid(f"{path}.scopes: expected an object, got {json_kind(scopes)}")
    check_scopes(scopes, f"{path}.scopes")
    return {k: v for k, v in payload.items() if k not in RESOURCE_SERVER_FIELDS}


def scope_names(scopes: Any) -> set[str]:
    """The names in a Resource's categorized ``scopes``."""
    return {str(item.get("name")) for item in read_scopes(scopes)[0]}


def timestamp() -> str:
    """Now, as ``createdTime`` and ``modifiedTime`` carry it (``RESOURCE_TIME_FORMAT``)."""
    if assumptions.RESOURCE_TIME_FORMAT == "epoch":
        return str(int(time.time()))
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def client_fields(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """The stored mutable fields of a client payload: validated, without read-only fields or secrets."""
    check(payload, CLIENT_SPEC, path)
    required_str(payload, "name", f"{path}.name")
    dropped = CLIENT_READ_ONLY + CLIENT_SECRET_KEYS
    return {k: v for k, v in payload.items() if k not in dropped}


def present(ids: list[str], existing: dict[str, Any], what: str) -> list[str]:
    """The ``ids`` a bulk delete acts on: those that exist, or (``BULK_DELETE_IGNORES_ABSENT_IDS``
    off) every one of them, else a 404 naming the absent ones and nothing is deleted."""
    absent = [i for i in dict.fromkeys(ids) if i not in existing]
    if absent and not assumptions.BULK_DELETE_IGNORES_ABSENT_IDS:
        raise not_found(f"no {what} with id {', '.join(repr(i) for i in absent)}")
    return [i for i in ids if i in existing]


def refuse_duplicate_name(record: Record, siblings: Iterable[Record], what: str) -> None:
    """A 400 when ``DUPLICATE_NAMES_ACCEPTED`` is off and another of ``siblings`` has the name."""
    name = record.fields["name"]
    if not assumptions.DUPLICATE_NAMES_ACCEPTED and any(
        other.fields.get("name") == name and other.id != record.id for other in siblings
    ):
        raise invalid(f"name: {what} is already named {name!r}")


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHANUMERIC) for _ in range(ID_LENGTH))


def new_client_id() -> str:
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(32))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Record:
    fields: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.fields["id"])


@dataclass
class Client(Record):
    secret: str


@dataclass
class Owner(Record):
    """What clients belong to: an MCP server or a Resource."""

    clients: dict[str, Client] = field(default_factory=dict)


class Server(Owner):
    """An MCP server of the legacy surface (``/v1/mgmt/mcp/server*``)."""


class Resource(Owner):
    """A Resource (``/v1/mgmt/resource*``); one of type mcp has clients as a server has."""

    @property
    def type(self) -> str | None:
        value = self.fields.get("type")
        return value if isinstance(value, str) else None

    def owns_clients(self) -> bool:
        return self.type == RESOURCE_TYPE_MCP or not assumptions.RESOURCE_CLIENTS_ONLY_FOR_MCP


class Store:
    """Every server, Resource and client, in creation order, with the operations of the API on them."""

    def __init__(self, state_file: Path | None = None) -> None:
        self.servers: dict[str, Server] = {}
        self.resources: dict[str, Resource] = {}
        self._state_file = state_file
        if state_file is not None and state_file.exists():
            self.servers, self.resources = load_state(state_file)

    def save(self) -> None:
        """Write the state file (and its folder), when there is one; called after every mutation."""
        if self._state_file is not None:
            state = dump_state(self.servers, self.resources)
            write_atomically(self._state_file, json.dumps(state, indent=1), mode=0o600)

    def clear(self) -> None:
        self.servers.clear()
        self.resources.clear()

    def server(self, body: dict[str, Any], key: str = "id") -> Server:
        server_id = required_str(body, key)
        try:
            return self.servers[server_id]
        except KeyError:
            raise not_found(f"no MCP server with id {server_id!r}") from None

    def owner(self, body: dict[str, Any]) -> Owner:
        """What ``mcpServerId`` names: an MCP server, or a Resource that has clients (of type mcp);
        an unknown id and any other Resource are refused alike."""
        owner_id = required_str(body, "mcpServerId")
        if owner_id in self.servers:
            return self.servers[owner_id]
        resource = self.resources.get(owner_id)
        if resource is not None and resource.owns_clients():
            return resource
        raise not_found(f"no MCP server with id {owner_id!r}")

    def client(self, body: dict[str, Any]) -> tuple[Owner, Client]:
        """The client named by ``id`` (or else ``clientId``) under the owner ``mcpServerId``."""
        server = self.owner(body)
        if optional_str(body, "id") is None and optional_str(body, "clientId") is not None:
            wanted = body["clientId"]
            for client in server.clients.values():
                if client.fields.get("clientId") == wanted:
                    return server, client
            raise not_found(f"no client with clientId {wanted!r} in MCP server {server.id!r}")
        client_id = required_str(body, "id")
        if client_id not in server.clients:
            raise not_found(f"no client with id {client_id!r} in MCP server {server.id!r}")
        return server, server.clients[client_id]

    def create_server(self, body: dict[str, Any]) -> Server:
        server = Server({"id": new_id("MS"), **server_fields(body, "server")})
        refuse_duplicate_name(server, self.servers.values(), "an MCP server")
        self.servers[server.id] = server
        return server

    def update_server(self, body: dict[str, Any]) -> Server:
        payload = body.get("server")
        if payload is None:
            raise missing("server is required")
        check(payload, {}, "server")
        required_str(payload, "id", "server.id")
        server = self.server(payload)
        updated = Server({"id": server.id, **server_fields(payload, "server")})
        refuse_duplicate_name(updated, self.servers.values(), "an MCP server")
        server.fields = updated.fields
        return server

    def delete_server(self, body: dict[str, Any]) -> None:
        self._delete_servers([self.server(body).id])

    def delete_servers(self, body: dict[str, Any]) -> None:
        self._delete_servers(present(id_list(body, "ids"), self.servers, "MCP server"))

    def _delete_servers(self, ids: list[str]) -> None:
        """Delete servers with their clients, or (``SERVER_DELETE_CASCADES`` off) none while one has any."""
        if not assumptions.SERVER_DELETE_CASCADES:
            holding = [server_id for server_id in ids if self.servers[server_id].clients]
            if holding:
                raise invalid(f"MCP server {holding[0]!r} still has clients: delete them first")
        for server_id in ids:
            self.servers.pop(server_id, None)  # an id may be listed twice

    def create_client(self, body: dict[str, Any]) -> Client:
        server = self.owner(body)
        assigned = {
            "id": new_id("MSC"),
            "clientId": new_client_id(),
            "mcpServerId": server.id,
            "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
            "status": assumptions.CLIENT_STATUS_ACTIVE,
        }
        client = Client({**assigned, **client_fields(body, "client")}, new_secret())
        refuse_unknown_scopes(client, server)
        refuse_duplicate_name(client, server.clients.values(), f"a client of MCP server {server.id!r}")
        server.clients[client.id] = client
        return client

    def update_client(self, body: dict[str, Any]) -> Client:
        required_str(body, "id")
        server, client = self.client(body)
        kept = {key: client.fields[key] for key in CLIENT_READ_ONLY if key in client.fields}
        updated = Client({**kept, **client_fields(body, "client")}, client.secret)
        refuse_unknown_scopes(updated, server)
        refuse_duplicate_name(updated, server.clients.values(), f"a client of MCP server {server.id!r}")
        client.fields = updated.fields
        return client

    def delete_client(self, body: dict[str, Any]) -> None:
        required_str(body, "id")
        server, client = self.client(body)
        del server.clients[client.id]

    def delete_clients(self, body: dict[str, Any]) -> None:
        server = self.owner(body)
        for client_id in present(id_list(body, "ids"), server.clients, f"client of MCP server {server.id!r}"):
            server.clients.pop(client_id, None)  # an id may be listed twice

    def rotate_secret(self, body: dict[str, Any]) -> str:
        required_str(body, "id")
        _, client = self.client(body)
        client.secret = new_secret()
        return client.secret

    def seed(self, body: dict[str, Any]) -> tuple[list[Server], list[Resource]]:
        """Add servers, Resources and clients exactly as given; all of them, or none when one is refused.
        Names and URIs are never refused here (whatever ``DUPLICATE_NAMES_ACCEPTED`` or
        ``RESOURCE_URI_UNIQUE``), nor a Resource's missing uri: a test stages any live state."""
        if body.get("servers") is None and body.get("resources") is None:
            raise missing("servers or resources is required")
        for key in ("servers", "resources"):
            check(body.get(key) or [], [{"clients": [{}]}], key)
        servers = [seeded_server(item, f"servers[{i}]") for i, item in enumerate(body.get("servers") or [])]
        resources = [
            seeded_resource(item, f"resources[{i}]") for i, item in enumerate(body.get("resources") or [])
        ]
        ids = [owner.id for owner in [*servers, *resources]]
        taken = self.servers.keys() | self.resources.keys()
        clashes = sorted({i for i in ids if ids.count(i) > 1 or i in taken})
        if clashes:
            raise invalid(f"ids already in use: {', '.join(clashes)}")
        self.servers.update((server.id, server) for server in servers)
        self.resources.update((resource.id, resource) for resource in resources)
        return servers, resources


def refuse_unknown_scopes(client: Client, owner: Owner) -> None:
    """A 400 when ``RESOURCE_CLIENT_SCOPES_CHECKED`` is on and a client of a Resource names a scope
    the Resource does not have."""
    if not (assumptions.RESOURCE_CLIENT_SCOPES_CHECKED and isinstance(owner, Resource)):
        return
    known = scope_names(owner.fields.get("scopes"))
    unknown = [name for name in client.fields.get("scopes") or [] if name not in known]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise invalid(f"client.scopes: {names} not among the scopes of Resource {owner.id!r}")


def seeded_server(item: dict[str, Any], path: str) -> Server:
    payload = {key: value for key, value in item.items() if key != "clients"}
    server = Server({"id": payload.get("id") or new_id("MS"), **server_fields(payload, path)})
    add_seeded_clients(server, item, path)
    return server


def seeded_resource(item: dict[str, Any], path: str) -> Resource:
    """A Resource as given, made in the console perhaps: its own id, version, times and type, which
    default to new ones and "mcp"; only the shapes and the name are checked."""
    payload = {key: value for key, value in item.items() if key != "clients"}
    fields = resource_fields(payload, path)
    required_str(payload, "name", f"{path}.name")
    version = optional_str(payload, "version", f"{path}.version") or "1"
    if not version.isdecimal():
        raise invalid(f"{path}.version: expected a decimal string, got {version!r}")
    now = timestamp()
    assigned = {
        "id": payload.get("id") or new_id(assumptions.RESOURCE_ID_PREFIX),
        "version": version,
        "createdTime": payload.get("createdTime") or now,
        "modifiedTime": payload.get("modifiedTime") or now,
        "type": payload.get("type") or RESOURCE_TYPE_MCP,
    }
    resource = Resource({**assigned, **{k: v for k, v in fields.items() if k != "type"}})
    add_seeded_clients(resource, item, path)
    return resource


def add_seeded_clients(owner: Owner, item: dict[str, Any], path: str) -> None:
    for index, entry in enumerate(item.get("clients") or []):
        client = seeded_client(entry, owner.id, path=f"{path}.clients[{index}]")
        if client.id in owner.clients:
            raise invalid(f"{path}.clients[{index}].id: {client.id!r} is used twice")
        owner.clients[client.id] = client


def seeded_client(entry: dict[str, Any], server_id: str, *, path: str) -> Client:
    fields = client_fields(entry, path)
    check(entry, {"secret": str}, path)
    assigned = {
        "id": entry.get("id") or new_id("MSC"),
        "clientId": entry.get("clientId") or new_client_id(),
        "mcpServerId": server_id,
        "registrationType": entry.get("registrationType") or assumptions.REGISTRATION_PRE_REGISTERED,
        "status": entry.get("status") or assumptions.CLIENT_STATUS_ACTIVE,
    }
    return Client({**assigned, **fields}, entry.get("secret") or new_secret())


def dump_owner(owner: Owner) -> dict[str, Any]:
    clients = [{"fields": c.fields, "secret": c.secret} for c in owner.clients.values()]
    return {"fields": owner.fields, "clients": clients}


def dump_state(servers: dict[str, Server], resources: dict[str, Resource]) -> dict[str, Any]:
    """The state file's content: fields and secrets kept apart, server scopes in the internal flat form."""
    return {
        "version": STATE_FILE_VERSION,
        "servers": [dump_owner(server) for server in servers.values()],
        "resources": [dump_owner(resource) for resource in resources.values()],
    }


def load_state(path: Path) -> tuple[dict[str, Server], dict[str, Resource]]:
    """The servers and Resources kept in a state file (one written before Resources has none).
    ValueError "state file PATH cannot be read: REASON" when it cannot be used; the reason never quotes
    the file (it holds client secrets)."""

    def unusable(reason: str) -> ValueError:
        return ValueError(f"state file {path} cannot be read: {reason}")

    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would hang the read
            raise unusable("it is not a regular file")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise unusable(exc.strerror or type(exc).__name__) from None
    except UnicodeDecodeError:
        raise unusable("it is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise unusable(f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError):  # nested too deep, or a number too long
        raise unusable("it is not valid JSON") from None
    if not isinstance(data, dict) or data.get("version") != STATE_FILE_VERSION:
        raise unusable(f"it is not an emulator state file of version {STATE_FILE_VERSION}")
    if not isinstance(data.get("servers"), list):
        raise unusable('its "servers" is missing or not a list')
    if not isinstance(data.get("resources", []), list):
        raise unusable('its "resources" is not a list')
    try:
        servers = [restored_server(entry) for entry in data["servers"]]
        resources = [Resource(dict(e["fields"]), restored_clients(e)) for e in data.get("resources", [])]
        return {s.id: s for s in servers}, {r.id: r for r in resources}
    except KeyError as exc:
        raise unusable(f"a server, Resource or client has no {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError):
        raise unusable("its servers or Resources are not as the emulator writes them") from None


def restored_clients(entry: dict[str, Any]) -> dict[str, Client]:
    clients = [Client(dict(c["fields"]), str(c["secret"])) for c in entry["clients"]]
    return {client.id: client for client in clients}


def restored_server(entry: dict[str, Any]) -> Server:
    fields = dict(entry["fields"])
    if isinstance(fields.get("approvedScopes"), list):
        fields["approvedScopes"] = restored_scopes(fields["approvedScopes"])
    return Server(fields, restored_clients(entry))


# How state files written before scope categories were kept marked an item: with its wire key.
LEGACY_CATEGORY_KEY = "_category"


def restored_scopes(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored scope items; those of an older state file, marked with their wire key, are read again
    (through the categorized shape) so that they keep their category and answers never carry the mark."""
    if not any(LEGACY_CATEGORY_KEY in item for item in items):
        return items
    marked: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if LEGACY_CATEGORY_KEY in item:
            plain = {key: value for key, value in item.items() if key != LEGACY_CATEGORY_KEY}
            marked.setdefault(str(item[LEGACY_CATEGORY_KEY]), []).append(plain)
    return read_scopes(marked)[0] + [item for item in items if LEGACY_CATEGORY_KEY not in item]
