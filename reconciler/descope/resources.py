"""The calls of the Resources surface (``/v1/mgmt/resource*``): MCP servers made as Resources.

A Resource is read and written in the MCP-server shape the rest of the reconciler knows
(``reconciler.descope.resource_wire``). Its clients are the MCP Server API's client calls
(``reconciler.descope.mcp_servers``), with the Resource's id as ``mcpServerId``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from reconciler.descope.endpoints import RESOURCE_ENDPOINTS, Endpoint
from reconciler.descope.resource_wire import one_resource_from_wire, resource_to_wire, resources_from_wire
from reconciler.descope.transport import MAX_SERVERS, Transport, log, read_answer, the_one, unusable
from reconciler.descope.wire import LiveServer, WireError
from reconciler.errors import BadRequest, NotFound

RESOURCES = RESOURCE_ENDPOINTS


class ResourceCalls(Transport):
    """The Resources surface's calls, for MCP servers made as Resources (``type`` ``mcp``)."""

    # ---- MCP servers on the Resources surface ----------------------------------------------------

    async def load_all_resources(self) -> list[LiveServer]:
        """The MCP servers made as Resources (``GET resources/load``; API Resources are left out)."""
        endpoint = RESOURCES.list
        data = await self._call(endpoint, None, idempotent=True)
        listed = data.get("resources")
        if isinstance(listed, list) and len(listed) > MAX_SERVERS:
            raise unusable(
                endpoint,
                f"the answer lists {len(listed):,} resources, more than the {MAX_SERVERS:,} this tool reads "
                "in one project",
            )
        return read_answer(endpoint, resources_from_wire, data)

    async def load_resource(self, resource_id: str) -> LiveServer:
        return await self._ask(RESOURCES.load, None, one_resource_from_wire, query={"id": resource_id})

    async def create_resource(
        self, fields: Mapping[str, Any], *, exclude_ids: Collection[str] = ()
    ) -> LiveServer:
        """Create an MCP server as a Resource; an unknown outcome is settled as for create_server."""
        endpoint = RESOURCES.create
        body = _wire_or_refuse(endpoint, {k: v for k, v in fields.items() if k != "id"})
        name = str(fields.get("name", ""))

        async def named() -> list[LiveServer]:
            found = await self.load_all_resources()
            return [s for s in found if s.name == name and s.id not in exclude_ids]

        async def lookup() -> LiveServer | None:
            return the_one(endpoint, f"resources named {name!r}", await named())

        async def sweep(created: LiveServer) -> LiveServer:
            await self._delete_late(endpoint, name, await named(), created.id, self.delete_resources)
            return created

        send = partial(self._ask, endpoint, body, one_resource_from_wire, idempotent=False)
        return await self._at_most_once(endpoint, send, lookup, sweep)

    async def update_resource(self, fields: Mapping[str, Any]) -> LiveServer:
        """Replace a Resource with ``fields`` (the FULL server, with ``id``; what it was read with is
        written back, ``version`` included)."""
        body = {"resource": _wire_or_refuse(RESOURCES.update, fields)}
        return await self._ask(RESOURCES.update, body, one_resource_from_wire)

    async def delete_resources(self, resource_ids: Collection[str]) -> None:
        """Delete Resources one by one (there is no bulk delete); one already gone counts as deleted."""
        for resource_id in resource_ids:
            try:
                await self._call(RESOURCES.delete, {"id": resource_id}, idempotent=True)
            except NotFound:
                log.debug("%s: %s was already gone", RESOURCES.delete, resource_id)


def _wire_or_refuse(endpoint: Endpoint, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A server's fields as a Resource body, or a clean error when it cannot be one."""
    try:
        return resource_to_wire(fields)
    except WireError as exc:
        raise BadRequest(f"not sent: {exc}", endpoint=endpoint) from None
