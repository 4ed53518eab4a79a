"""The emulator's Resources surface (``/v1/mgmt/resource*``): the rules of each call, and the projection
of a Resource into an MCP server.

Every behaviour the wire reference (``shared/reference/descope-resources-api.md``) marks [assume] reads a
constant of the "Resources surface" section of ``reconciler.descope.assumptions``. The one documented rule is
that ``dynamicRegistrationSettings.useTemplate`` needs a ``dynamicRegistrationTemplateId``; templates
themselves are not modelled (inline settings are stored and echoed as given).
"""

from __future__ import annotations

from typing import Any

from reconciler.descope import assumptions
from reconciler.emulator.store import (
    RESOURCE_SERVER_FIELDS,
    RESOURCE_TYPE_MCP,
    ApiFailure,
    Resource,
    Store,
    check,
    invalid,
    missing,
    new_id,
    not_found,
    optional_str,
    refuse_duplicate_name,
    required_str,
    resource_fields,
    timestamp,
)
from reconciler.scopes import ScopesFormat, read_scopes, write_scopes

# Where each field of a projected MCP server comes from: the settings of dynamicRegistrationSettings that
# an MCP server carries at its top level (the reference's §4 table; approvedCallbackUrls and logo have no
# inline equivalent on a Resource, consentFlowId and consentFlowHostingURL none at all).
PROJECTED_SETTINGS = (
    "dynamicRegistration",
    "cimdSettings",
    "skipConsentScreen",
    "loginPageURL",
    "sessionSettings",
    "forceAddAllAuthorizationInfo",
    "tags",
)
WHAT = "a Resource"


def resource_by_id(store: Store, arguments: dict[str, Any]) -> Resource:
    """The Resource ``id`` names; an MCP server's id is no Resource's (the surfaces keep apart)."""
    resource_id = required_str(arguments, "id")
    try:
        return store.resources[resource_id]
    except KeyError:
        raise not_found(f"no Resource with id {resource_id!r}") from None


def resource_by_uri(store: Store, arguments: dict[str, Any]) -> Resource:
    """The Resource whose ``uri`` is exactly ``uri``; the first created, should several have it."""
    uri = required_str(arguments, "uri")
    for resource in store.resources.values():
        if resource.fields.get("uri") == uri:
            return resource
    raise not_found(f"no Resource with uri {uri!r}")


def refuse_broken_rules(store: Store, resource: Resource, path: str) -> None:
    """What a create, or the Resource an update leaves, must satisfy beyond its fields' shapes."""
    fields = resource.fields
    for key in assumptions.RESOURCE_REQUIRED_FIELDS:
        required_str(fields, key, f"{path}.{key}")
    kind = optional_str(fields, "type", f"{path}.type")
    if kind is not None and kind not in assumptions.RESOURCE_TYPES:
        expected = ", ".join(repr(t) for t in assumptions.RESOURCE_TYPES)
        raise invalid(f"{path}.type: {kind!r} is not a Resource type (expected one of {expected})")
    uri = optional_str(fields, "uri", f"{path}.uri")
    if uri is None and kind == RESOURCE_TYPE_MCP and assumptions.RESOURCE_URI_REQUIRED:
        raise missing(f"{path}.uri is required for a Resource of type {RESOURCE_TYPE_MCP!r}")
    settings = fields.get("dynamicRegistrationSettings") or {}
    if settings.get("useTemplate") and not settings.get("dynamicRegistrationTemplateId"):
        template = f"{path}.dynamicRegistrationSettings.dynamicRegistrationTemplateId"
        raise missing(f"{template} is required when useTemplate is true")
    if uri is not None and assumptions.RESOURCE_URI_UNIQUE:
        for other in store.resources.values():
            if other.fields.get("uri") == uri and other.id != resource.id:
                raise invalid(f"{path}.uri: Resource {other.id!r} already has the uri {uri!r}")
    if "name" in fields:
        refuse_duplicate_name(resource, store.resources.values(), WHAT)


def create_resource(store: Store, body: dict[str, Any]) -> Resource:
    """A new Resource from the flat body; the server's fields in the body are ignored (strict mode
    refuses them before this)."""
    now = timestamp()
    assigned = {
        "id": new_id(assumptions.RESOURCE_ID_PREFIX),
        "version": "1",
        "createdTime": now,
        "modifiedTime": now,
    }
    resource = Resource({**assigned, **resource_fields(body, "resource")})
    refuse_broken_rules(store, resource, "resource")
    store.resources[resource.id] = resource
    return resource


def update_resource(store: Store, body: dict[str, Any]) -> Resource:
    """``{"resource": {...}}`` keyed by its id: the client-settable fields replaced (or, with
    ``RESOURCE_UPDATE_IS_FULL_REPLACEMENT`` off, patched); id, version and createdTime kept, version
    one more, modifiedTime now. The version, createdTime and modifiedTime a client loaded may come back."""
    payload = body.get("resource")
    if payload is None:
        raise missing("resource is required")
    check(payload, {}, "resource")
    required_str(payload, "id", "resource.id")
    current = resource_by_id(store, payload)
    given = resource_fields(payload, "resource")
    if assumptions.RESOURCE_UPDATE_IS_FULL_REPLACEMENT:
        settable = given
    else:
        before = {k: v for k, v in current.fields.items() if k not in RESOURCE_SERVER_FIELDS}
        settable = {**before, **{k: v for k, v in given.items() if v is not None}}
    refuse_stale_version(current, payload)
    kept: dict[str, Any] = {
        key: current.fields[key] for key in ("id", "createdTime") if key in current.fields
    }
    assigned = {"version": next_version(current.fields.get("version")), "modifiedTime": timestamp()}
    updated = Resource({**kept, **assigned, **settable}, current.clients)
    refuse_broken_rules(store, updated, "resource")
    was, now = current.fields.get("type"), updated.fields.get("type")
    if now != was and not assumptions.RESOURCE_TYPE_CHANGE_ALLOWED:
        raise invalid(f"resource.type: a Resource's type cannot change (it is {was!r}, not {now!r})")
    current.fields = updated.fields
    return current


def next_version(version: Any) -> str:
    """One more than ``version``, a decimal string; "1" after anything else."""
    return str(int(version) + 1) if isinstance(version, str) and version.isdecimal() else "1"


def refuse_stale_version(current: Resource, payload: dict[str, Any]) -> None:
    """With ``RESOURCE_VERSION_CHECKED`` on, refuse an update that carries another version than the
    stored one (an update without a version is accepted)."""
    if not assumptions.RESOURCE_VERSION_CHECKED:
        return
    sent, stored = optional_str(payload, "version", "resource.version"), current.fields.get("version")
    if sent is not None and sent != stored:
        raise ApiFailure(
            assumptions.RESOURCE_VERSION_MISMATCH_STATUS,
            assumptions.VALIDATION_FAILURE_CODE,
            description=f"resource.version: {sent!r} is not the current version {stored!r}; load it again",
        )


def delete_resource(store: Store, body: dict[str, Any]) -> None:
    """Delete a Resource with its clients (``RESOURCE_DELETE_CASCADES``); an absent id is a 404 or
    nothing at all (``RESOURCE_DELETE_ABSENT_IS_ERROR``)."""
    resource_id = required_str(body, "id")
    resource = store.resources.get(resource_id)
    if resource is None:
        if assumptions.RESOURCE_DELETE_ABSENT_IS_ERROR:
            raise not_found(f"no Resource with id {resource_id!r}")
        return
    if resource.clients and not assumptions.RESOURCE_DELETE_CASCADES:
        raise invalid(f"Resource {resource_id!r} still has clients: delete them first")
    del store.resources[resource_id]


def is_mcp(resource: Resource) -> bool:
    return resource.type == RESOURCE_TYPE_MCP


def projected_server(resource: Resource, shape: ScopesFormat) -> dict[str, Any]:
    """A Resource of type mcp as an MCP server object: uri → audienceWhitelist[0], scopes →
    approvedScopes (in ``shape``), the settings of dynamicRegistrationSettings to the top level."""
    fields = resource.fields
    server: dict[str, Any] = {"id": resource.id}
    server |= {key: fields[key] for key in ("name", "description") if key in fields}
    if fields.get("uri"):
        server["audienceWhitelist"] = [fields["uri"]]
    if fields.get("scopes") is not None:
        server["approvedScopes"] = write_scopes(read_scopes(fields["scopes"])[0], shape)
    settings = fields.get("dynamicRegistrationSettings") or {}
    server |= {key: settings[key] for key in PROJECTED_SETTINGS if key in settings}
    return server
