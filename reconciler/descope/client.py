"""The Descope Management API client: the calls of both surfaces on one shared transport.

The rest of the reconciler holds one :class:`DescopeClient` per run: ``reconciler.live`` reads both
surfaces with it, and ``reconciler.operations`` picks the calls of the surface a server lives on. None
of them needs to know which module of this package a call is written in.
"""

from __future__ import annotations

from reconciler.descope.mcp_servers import McpServerCalls
from reconciler.descope.resources import ResourceCalls


class DescopeClient(McpServerCalls, ResourceCalls):
    """Async client of Descope's Management API for MCP servers and their clients, on both surfaces:
    the MCP Server API (``/v1/mgmt/mcp/*``) and Resources (``/v1/mgmt/resource*``). Use ``async
    with``; share one per run."""
