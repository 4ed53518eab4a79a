"""Every endpoint of Descope's Management API that mcp-reconciler calls, both surfaces side by side (pure).

An MCP server lives on one of two surfaces: the MCP Server API (``/v1/mgmt/mcp/``, every call a POST
with a JSON body) or the Resources surface (``/v1/mgmt/resource*``, where loads are GETs with query
parameters). The clients of a server have one set of endpoints whatever surface their server is on:
the MCP Server API's, with a Resource's id as ``mcpServerId``.

Each table is a kind's :class:`Endpoints` (``reconciler.kinds`` names them in its descriptors); the
client modules beside this one (``mcp_servers``, ``resources``) make the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Endpoint:
    """One call of the Management API: its method and path (query parameters are given per call)."""

    method: Literal["GET", "POST"]
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Endpoints:
    """The calls that read and write one kind (the secret calls only for a kind that holds one)."""

    create: Endpoint
    update: Endpoint
    load: Endpoint
    list: Endpoint  # every object of the kind (under one parent, for a child kind)
    delete: Endpoint
    delete_many: Endpoint | None  # None: only one at a time (a Resource)
    read_secret: Endpoint | None = None
    rotate_secret: Endpoint | None = None


# ---- the MCP Server API ------------------------------------------------------------------------
# shared/reference/descope-mcp-api.md, "Endpoints": every call is a POST with a JSON body, under one prefix.

API_PREFIX = "/v1/mgmt/mcp/"


def _post(path: str) -> Endpoint:
    return Endpoint("POST", API_PREFIX + path)


# MCP servers made through the MCP Server API.
MCP_SERVER_ENDPOINTS = Endpoints(
    create=_post("server/create"),
    update=_post("server/update"),
    load=_post("server/load"),
    list=_post("servers/all"),
    delete=_post("server/delete"),
    delete_many=_post("servers/delete"),
)

# The clients of an MCP server, on either surface: the clients of a Resource use these same paths with
# the Resource's id as mcpServerId (shared/reference/descope-resources-api.md §5.2, §5.3).
CLIENT_ENDPOINTS = Endpoints(
    create=_post("server/client/create"),
    update=_post("server/client/update"),
    load=_post("server/client/load"),
    list=_post("server/clients/search"),
    delete=_post("server/client/delete"),
    delete_many=_post("server/clients/delete"),
    read_secret=_post("server/client/secret"),
    rotate_secret=_post("server/client/secret/rotate"),
)

# ---- the Resources surface ---------------------------------------------------------------------

RESOURCES_PREFIX = "/v1/mgmt/"

# MCP servers made as Resources (shared/reference/descope-resources-api.md §3): loads are GETs with
# query parameters, there is no bulk delete, and the clients of a Resource use CLIENT_ENDPOINTS.
RESOURCE_ENDPOINTS = Endpoints(
    create=Endpoint("POST", RESOURCES_PREFIX + "resource/create"),
    update=Endpoint("POST", RESOURCES_PREFIX + "resource/update"),
    load=Endpoint("GET", RESOURCES_PREFIX + "resource/load"),
    list=Endpoint("GET", RESOURCES_PREFIX + "resources/load"),
    delete=Endpoint("POST", RESOURCES_PREFIX + "resource/delete"),
    delete_many=None,
)
