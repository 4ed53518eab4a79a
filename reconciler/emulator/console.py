"""The emulator's console: the hand edits a person makes in Descope's console, on the admin surface.

``POST /emulator/console`` takes one request (``handle``): list the servers, show one object, or
update, create or delete a server (MCP server or Resource) or a client, named as people name them
(``server`` and ``client`` names, or ids). An update is a list of edits of the object as stored, in
its own surface's field names, each at a dotted path: ``set`` a value (``null`` removes the field),
``add`` an item to a list (once), ``remove`` one. The result goes through the same store operation as
the API's update, so the same checks apply, but not strict mode and not the /v1 pipeline: no traffic
counted, no rate limit, no fault, as a person's click in the console is none of them. Nothing is
stamped with an ownership tag: what the console makes is unmanaged until a manifest adopts it.
"""

from __future__ import annotations

import copy
from typing import Any

from reconciler.emulator import resources
from reconciler.emulator.store import (
    CLIENT_READ_ONLY,
    CLIENT_SECRET_KEYS,
    RESOURCE_SERVER_FIELDS,
    RESOURCE_TYPE_MCP,
    SERVER_READ_ONLY,
    Client,
    Owner,
    Resource,
    Server,
    Store,
    check,
    invalid,
    json_kind,
    missing,
    not_found,
    optional_str,
    required_str,
)
from reconciler.scopes import ScopesFormat, write_scopes

ACTIONS = ("list", "show", "update", "create", "delete")
OPERATIONS = ("set", "add", "remove")
SURFACES = ("mcp-servers", "resources")
# What a person cannot change in the console: what Descope assigns, and what is not a field.
READ_ONLY = {
    "server": (*SERVER_READ_ONLY, "clients"),
    "resource": (*RESOURCE_SERVER_FIELDS, "clients"),
    "client": (*CLIENT_READ_ONLY, *CLIENT_SECRET_KEYS),
}


def handle(store: Store, body: dict[str, Any], *, shape: ScopesFormat) -> dict[str, Any]:
    """Carry out one console request; a change is saved to the state file before the answer."""
    check(body, {"action": str, "server": str, "client": str, "surface": str, "edits": [{}]}, "console")
    action = optional_str(body, "action") or "update"
    if action not in ACTIONS:
        raise invalid(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    if action == "list":
        return {"servers": [summary(owner) for owner in owners(store)]}
    server_name = required_str(body, "server")
    client_name = optional_str(body, "client")
    if action == "create":
        answer = create(store, body, server_name, client_name, shape=shape)
    else:
        owner = find_owner(store, server_name)
        client = find_client(owner, client_name) if client_name is not None else None
        if action == "show":
            return view(owner, client, shape=shape)
        if action == "delete":
            answer = {**view(owner, client, shape=shape), "deleted": True}
            delete(store, owner, client)
        else:
            answer = view(*update(store, owner, client, body, shape=shape), shape=shape)
    store.save()
    return answer


# --- finding objects by name


def owners(store: Store) -> list[Owner]:
    return [*store.servers.values(), *store.resources.values()]


def surface_of(owner: Owner) -> str:
    return SURFACES[1] if isinstance(owner, Resource) else SURFACES[0]


def find_owner(store: Store, wanted: str) -> Owner:
    """The server or Resource whose id or name is ``wanted``; a name two of them have is refused."""
    if wanted in store.servers:
        return store.servers[wanted]
    if wanted in store.resources:
        return store.resources[wanted]
    named = [owner for owner in owners(store) if owner.fields.get("name") == wanted]
    if len(named) > 1:
        ids = ", ".join(f"{owner.id} ({surface_of(owner)})" for owner in named)
        raise invalid(f"{len(named)} servers are named {wanted!r}: {ids}; name one by its id")
    if not named:
        names = sorted({str(owner.fields.get("name")) for owner in owners(store)})
        known = f"the servers are {', '.join(repr(n) for n in names)}" if names else "there is no server"
        raise not_found(f"no server is named {wanted!r}: {known}")
    return named[0]


def find_client(owner: Owner, wanted: str) -> Client:
    """The client of ``owner`` whose id, clientId or name is ``wanted``."""
    for client in owner.clients.values():
        if wanted in (client.id, client.fields.get("clientId")):
            return client
    named = [client for client in owner.clients.values() if client.fields.get("name") == wanted]
    server = owner.fields.get("name")
    if len(named) > 1:
        ids = ", ".join(client.id for client in named)
        raise invalid(
            f"{len(named)} clients of server {server!r} are named {wanted!r}: {ids}; name one by its id"
        )
    if not named:
        names = sorted(str(client.fields.get("name")) for client in owner.clients.values())
        known = f"its clients are {', '.join(repr(n) for n in names)}" if names else "it has no client"
        raise not_found(f"server {server!r} has no client named {wanted!r}: {known}")
    return named[0]


# --- what the console shows: fields as stored, never a secret


def editable(owner: Owner, *, shape: ScopesFormat) -> dict[str, Any]:
    """A server's fields as the API shows them (approvedScopes in the emulator's shape), or a
    Resource's as stored; a copy, safe to edit."""
    fields = copy.deepcopy(owner.fields)
    if isinstance(owner, Server) and isinstance(fields.get("approvedScopes"), list):
        fields["approvedScopes"] = write_scopes(fields["approvedScopes"], shape)
    return fields


def view(owner: Owner, client: Client | None, *, shape: ScopesFormat) -> dict[str, Any]:
    if client is not None:
        return {
            "kind": "client",
            "server": owner.fields.get("name"),
            "id": client.id,
            "name": client.fields.get("name"),
            "fields": copy.deepcopy(client.fields),
        }
    return {
        "kind": "server",
        "surface": surface_of(owner),
        "id": owner.id,
        "name": owner.fields.get("name"),
        "fields": editable(owner, shape=shape),
        "clients": [client.fields.get("name") for client in owner.clients.values()],
    }


def summary(owner: Owner) -> dict[str, Any]:
    clients = [
        {
            "id": client.id,
            "name": client.fields.get("name"),
            "registrationType": client.fields.get("registrationType"),
            "tags": client.fields.get("tags") or [],
        }
        for client in owner.clients.values()
    ]
    tags = owner.fields.get("tags")
    if isinstance(owner, Resource):
        tags = (owner.fields.get("dynamicRegistrationSettings") or {}).get("tags")
    return {
        "id": owner.id,
        "name": owner.fields.get("name"),
        "surface": surface_of(owner),
        "tags": tags or [],
        "clients": clients,
    }


# --- edits


def edited(
    fields: dict[str, Any], edits: list[dict[str, Any]], *, read_only: tuple[str, ...]
) -> dict[str, Any]:
    """``fields`` with every edit made, in order."""
    for index, edit in enumerate(edits):
        where = f"edits[{index}]"
        path = required_str(edit, "path", f"{where}.path")
        keys = path.split(".")
        if not all(keys):
            raise invalid(f"{where}.path: {path!r} is not a field name or a dotted path")
        if keys[0] in read_only:
            raise invalid(f"{where}.path: {keys[0]} cannot be changed in the console: Descope assigns it")
        given = [operation for operation in OPERATIONS if operation in edit]
        if len(given) != 1:
            raise missing(f"{where}: exactly one of set, add or remove is required")
        parent = container(fields, keys, where)
        make(parent, keys[-1], given[0], edit[given[0]], where=f"{where} ({path})")
    return fields


def container(fields: dict[str, Any], keys: list[str], where: str) -> dict[str, Any]:
    """The object that holds the last key of a dotted path, made where it is missing."""
    parent = fields
    for key in keys[:-1]:
        child = parent.get(key)
        if child is None:
            child = parent[key] = {}
        if not isinstance(child, dict):
            raise invalid(f"{where}.path: {key} is {json_kind(child)}, not an object")
        parent = child
    return parent


def make(parent: dict[str, Any], key: str, operation: str, value: Any, *, where: str) -> None:
    if operation == "set":
        if value is None:
            parent.pop(key, None)
        else:
            parent[key] = value
        return
    items = parent.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        raise invalid(f"{where}: the field is {json_kind(items)}, not an array")
    if operation == "add":
        parent[key] = items if value in items else [*items, value]
    elif value not in items:
        raise invalid(f"{where}: {value!r} is not in the array")
    else:
        parent[key] = [item for item in items if item != value]


def update(
    store: Store, owner: Owner, client: Client | None, body: dict[str, Any], *, shape: ScopesFormat
) -> tuple[Owner, Client | None]:
    edits = body.get("edits") or []
    if not edits:
        raise missing("edits is required for an update: at least one")
    if client is not None:
        fields = edited(copy.deepcopy(client.fields), edits, read_only=READ_ONLY["client"])
        return owner, store.update_client({**fields, "mcpServerId": owner.id, "id": client.id})
    if isinstance(owner, Resource):
        fields = edited(editable(owner, shape=shape), edits, read_only=READ_ONLY["resource"])
        return resources.update_resource(store, {"resource": fields}), None
    fields = edited(editable(owner, shape=shape), edits, read_only=READ_ONLY["server"])
    return store.update_server({"server": {**fields, "id": owner.id}}), None


def create(
    store: Store, body: dict[str, Any], server: str, client: str | None, *, shape: ScopesFormat
) -> dict[str, Any]:
    """A new server (on ``surface``, MCP servers by default) or a new client of a server."""
    edits = body.get("edits") or []
    if client is not None:
        owner = find_owner(store, server)
        fields = edited({"name": client}, edits, read_only=READ_ONLY["client"])
        made = store.create_client({**fields, "mcpServerId": owner.id})
        return view(owner, made, shape=shape)
    surface = optional_str(body, "surface") or SURFACES[0]
    if surface not in SURFACES:
        raise invalid(f"surface: {surface!r} is not one of {', '.join(SURFACES)}")
    if surface == SURFACES[1]:
        base = {"name": server, "type": RESOURCE_TYPE_MCP}
        fields = edited(base, edits, read_only=READ_ONLY["resource"])
        return view(resources.create_resource(store, fields), None, shape=shape)
    fields = edited({"name": server}, edits, read_only=READ_ONLY["server"])
    return view(store.create_server(fields), None, shape=shape)


def delete(store: Store, owner: Owner, client: Client | None) -> None:
    """As the API deletes: a server or Resource with its clients, or one client."""
    if client is not None:
        store.delete_client({"mcpServerId": owner.id, "id": client.id})
    elif isinstance(owner, Resource):
        resources.delete_resource(store, {"id": owner.id})
    else:
        store.delete_server({"id": owner.id})
