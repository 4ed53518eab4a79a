"""A Descope Resource of type ``mcp`` read as an MCP server, and written back as a Resource (pure).

The rest of the reconciler sees one shape of MCP server, the MCP Server API's: a Resource is mapped
into it field by field as the Resources reference maps them (``shared/reference/descope-resources-api.md``
§4): ``uri`` is the one audience, ``scopes`` the approved scopes, and the registration, consent,
session and tag settings come up from ``dynamicRegistrationSettings``. Everything else a Resource
carries (``version``, ``type``, ``userAccess``, ``clientAccess``, its times, template settings, fields
nobody knows yet) is kept under :data:`EXTRAS_KEY` and written back unchanged, because an update
replaces the whole Resource.

A Resource has no tags of its own; ``dynamicRegistrationSettings.tags`` are documented as defaults for
the clients that register themselves, and a production client of the live API keeps its server tags
there. The ownership and protect tags live there too: the only place a Resource can carry them
(an assumption, written down in ``assumptions``, "Resources surface").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.descope.wire import LiveServer, WireError, check_resource, optional_text
from reconciler.scopes import read_scopes, write_scopes

EXTRAS_KEY = "_resource"  # where a Resource's own fields wait, untouched, to be written back
DRS = "dynamicRegistrationSettings"
# The MCP-server fields that live inside dynamicRegistrationSettings on a Resource.
DRS_FIELDS = (
    "dynamicRegistration",
    "cimdSettings",
    "skipConsentScreen",
    "loginPageURL",
    "sessionSettings",
    "forceAddAllAuthorizationInfo",
    "tags",
)
# MCP-server fields a Resource has no place for, and why (the reference's §4): a manifest that sets one
# for a server on the Resources surface is refused, naming the field.
UNSUPPORTED = {
    "approvedCallbackUrls": (
        "a Resource takes callback URLs only from a registration template: set them on each client"
    ),
    "logo": "a Resource takes a logo only from a registration template; set it on each client",
    "consentFlowId": "a Resource has no consent flow setting (loginPageURL is its consent page)",
    "consentFlowHostingURL": "a Resource has no consent flow setting (loginPageURL is its consent page)",
}
MCP_TYPE = "mcp"


def is_mcp_resource(data: Mapping[str, Any]) -> bool:
    """Whether a Resource answers for an MCP server (API Resources are left alone)."""
    return data.get("type") == MCP_TYPE


def resource_from_wire(data: Mapping[str, Any], where: str = "resource") -> LiveServer:
    """An MCP-type Resource as an MCP server; :class:`WireError` if a field it reads has the wrong type."""
    check_resource(data, where)
    settings = data.get(DRS) or {}
    scopes, _shape = read_scopes(data.get("scopes"))
    fields: dict[str, Any] = {
        key: data[key] for key in ("id", "name", "description") if data.get(key) is not None
    }
    uri = optional_text(data, "uri", where=where)
    if uri:
        fields["audienceWhitelist"] = [uri]
    if data.get("scopes") is not None:
        fields["approvedScopes"] = scopes
    fields.update({key: settings[key] for key in DRS_FIELDS if settings.get(key) is not None})
    top = {k: v for k, v in data.items() if k not in ("id", "name", "description", "uri", "scopes", DRS)}
    extra_settings = {k: v for k, v in settings.items() if k not in DRS_FIELDS}
    fields[EXTRAS_KEY] = {"resource": top, "settings": extra_settings}
    return LiveServer(
        id=optional_text(data, "id", where=where),
        name=optional_text(data, "name", where=where),
        fields=fields,
        scopes_format="categorized",
        surface="resources",
    )


def resource_to_wire(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A server's fields as a Resource: the inverse of :func:`resource_from_wire`. The kept fields of
    the Resource go back as they were read; a new Resource gets ``type: mcp``."""
    extras = fields.get(EXTRAS_KEY) or {}
    resource: dict[str, Any] = {"type": MCP_TYPE, **dict(extras.get("resource") or {})}
    for key in ("id", "name", "description"):
        if key in fields:
            resource[key] = fields[key]
    audiences = list(fields.get("audienceWhitelist") or [])
    if len(audiences) > 1:
        raise WireError(f"a Resource has one uri; the server names {len(audiences)} audiences")
    if audiences:
        resource["uri"] = audiences[0]
    if "approvedScopes" in fields:
        resource["scopes"] = write_scopes(list(fields["approvedScopes"] or []), "categorized")
    settings = {**dict(extras.get("settings") or {}), **{k: fields[k] for k in DRS_FIELDS if k in fields}}
    if settings:
        resource[DRS] = settings
    return resource


def resources_from_wire(data: Mapping[str, Any]) -> list[LiveServer]:
    """The MCP servers among the Resources of a ``resources/load`` answer (API Resources left out)."""
    items = data.get("resources")
    if items is None:
        return []
    if not isinstance(items, list):
        raise WireError("unexpected response: resources is not a list")
    found = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise WireError(f"unexpected response: resources[{n}] is not an object")
        if is_mcp_resource(item):
            found.append(resource_from_wire(item, f"resources[{n}]"))
    return found


def one_resource_from_wire(data: Mapping[str, Any]) -> LiveServer:
    """The Resource of an answer that holds one (``{"resource": {...}}``)."""
    value = data.get("resource")
    if not isinstance(value, Mapping) or not value.get("id"):
        raise WireError("the response has no resource.id")
    return resource_from_wire(value, "resource")
