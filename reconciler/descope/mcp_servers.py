"""The calls of the MCP Server API (``/v1/mgmt/mcp/``): MCP servers, and the clients of a server.

The client calls (``server/client*``, ``server/clients*``) serve a server on either surface: the
clients of a Resource are read and written with these same calls, the Resource's id as
``mcpServerId``. A search of a server's clients fans out to pages that must add up; what it may
cost in all is bounded by the constants below.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from reconciler.descope import assumptions
from reconciler.descope.endpoints import CLIENT_ENDPOINTS, MCP_SERVER_ENDPOINTS, Endpoint
from reconciler.descope.transport import (
    MAX_SERVERS,
    MIB,
    Budget,
    Transport,
    gather_or_cancel,
    log,
    read_answer,
    the_one,
    unusable,
)
from reconciler.descope.wire import (
    LiveClient,
    LiveServer,
    client_from_wire,
    clients_page,
    optional_text,
    required_text,
    server_from_wire,
    server_to_wire,
    servers_from_wire,
)
from reconciler.errors import ApiError
from reconciler.secret import Secret


def _present(endpoint: Endpoint | None, what: str) -> Endpoint:
    if endpoint is None:
        raise TypeError(f"the client kind has no {what} endpoint")
    return endpoint


SERVERS = MCP_SERVER_ENDPOINTS
CLIENTS = CLIENT_ENDPOINTS
DELETE_SERVERS = _present(SERVERS.delete_many, "delete_many")
DELETE_CLIENTS = _present(CLIENTS.delete_many, "delete_many")
SEARCH = CLIENTS.list
READ_SECRET = _present(CLIENTS.read_secret, "read_secret")
ROTATE_SECRET = _present(CLIENTS.rotate_secret, "rotate_secret")

# ---- what a search of clients may cost ----------------------------------------------------------
# A search fans out to ceil(total / page) pages. Clients registered by end users (DCR, CIMD) make a
# popular server's count grow far past what anyone pre-registers, so the cap is generous: 100,000
# clients, ~220 MB of live state at 2.2 KB per object (BENCHMARKS.md); a `total` above it (say
# 1,000,000,000) is an error before any page beyond the first is asked for.
MAX_CLIENTS_PER_SERVER = 100_000
# ... in at most this many pages: 100,000 clients at the 100 per page the client asks for; a server
# that answers with much smaller pages than asked for reaches this cap first.
MAX_SEARCH_PAGES = 1_000
# ... and at most this many bytes in all (100,000 clients of ~2.5 KB of JSON), so that 1,000 pages
# of MAX_RESPONSE_BYTES each cannot add up to 32 GB.
MAX_SEARCH_BYTES = 256 * MIB
# Pages that do not add up (a short page before the last, a total that moves, a client on two
# pages) mean the list changed while it was read, or a broken server: read it again, this often.
SEARCH_READS = 3


@dataclass(frozen=True)
class CreatedClient:
    """What client creation returns. ``recovered``: the create's answer was lost and found again."""

    id: str
    client_id: str
    secret: Secret
    recovered: bool = False


class McpServerCalls(Transport):
    """The MCP Server API's calls: its servers (``server*``, ``servers*``) and the clients of a server
    on either surface (``server/client*``, ``server/clients*``)."""

    # ---- servers -------------------------------------------------------------------------------

    async def load_all_servers(self) -> list[LiveServer]:
        endpoint = SERVERS.list
        data = await self._call(endpoint, {}, idempotent=True)
        listed = data.get("servers")
        if isinstance(listed, list) and len(listed) > MAX_SERVERS:
            raise unusable(
                endpoint,
                f"the answer lists {len(listed):,} servers, more than the {MAX_SERVERS:,} this tool reads "
                "in one project",
            )
        servers = read_answer(endpoint, servers_from_wire, data)
        seen = next((s.scopes_format for s in servers if s.scopes_format), None)
        if seen:
            self.scopes_format = seen  # write scopes in the shape this project's API uses
        return servers

    async def load_server(self, server_id: str) -> LiveServer:
        return await self._ask(SERVERS.load, {"id": server_id}, server_from_wire)

    async def create_server(
        self, fields: Mapping[str, Any], *, exclude_ids: Collection[str] = ()
    ) -> LiveServer:
        """Create a server. If the outcome is unknown, a server of that name not in ``exclude_ids``
        (the ids known before) is taken as the one created, so a retry never makes a duplicate."""
        endpoint = SERVERS.create
        body = server_to_wire({k: v for k, v in fields.items() if k != "id"}, self.scopes_format)
        name = str(fields.get("name", ""))

        async def named() -> list[LiveServer]:
            return [s for s in await self.load_all_servers() if s.name == name and s.id not in exclude_ids]

        async def lookup() -> LiveServer | None:
            return the_one(endpoint, f"servers named {name!r}", await named())

        async def sweep(created: LiveServer) -> LiveServer:
            await self._delete_late(endpoint, name, await named(), created.id, self.delete_servers)
            return created

        send = partial(self._ask, endpoint, body, server_from_wire, idempotent=False)
        return await self._at_most_once(endpoint, send, lookup, sweep)

    async def update_server(self, server: Mapping[str, Any]) -> LiveServer:
        """Replace a server with ``server`` (the FULL object, with ``id``)."""
        body = {"server": server_to_wire(server, self.scopes_format)}
        return await self._ask(SERVERS.update, body, server_from_wire)

    async def delete_servers(self, server_ids: Collection[str]) -> None:
        await self._call(DELETE_SERVERS, {"ids": list(server_ids)}, idempotent=True)

    # ---- clients -------------------------------------------------------------------------------

    async def create_client(
        self, server_id: str, fields: Mapping[str, Any], *, exclude_ids: Collection[str] = ()
    ) -> CreatedClient:
        """Create a client and return its secret. If the outcome is unknown, a client of that name
        not in ``exclude_ids`` is taken as the one created and its secret is read back."""
        endpoint = CLIENTS.create
        body = {**{k: v for k, v in fields.items() if k not in ("id", "clientId")}, "mcpServerId": server_id}
        name = str(fields.get("name", ""))

        async def send() -> CreatedClient:
            data = await self._call(endpoint, body, idempotent=False)
            made = read_answer(
                endpoint, lambda d: (required_text(d, "id"), optional_text(d, "clientId")), data
            )
            return CreatedClient(*made, _secret(data, endpoint))

        async def named() -> list[LiveClient]:
            return [c for c in await self.search_clients(server_id, name=name) if c.id not in exclude_ids]

        async def lookup() -> CreatedClient | None:
            found = the_one(endpoint, f"clients named {name!r}", await named())
            if found is None:
                return None
            secret = await self.get_client_secret(server_id, found.id)
            return CreatedClient(found.id, found.client_id, secret, recovered=True)

        async def sweep(created: CreatedClient) -> CreatedClient:
            delete = partial(self.delete_clients, server_id)
            await self._delete_late(endpoint, name, await named(), created.id, delete)
            return created

        return await self._at_most_once(endpoint, send, lookup, sweep)

    async def update_client(self, client: Mapping[str, Any]) -> LiveClient:
        """Replace a client's mutable fields with ``client`` (with ``id`` and ``mcpServerId``)."""
        server_id = str(client.get("mcpServerId", ""))
        return await self._ask(CLIENTS.update, dict(client), partial(client_from_wire, server_id=server_id))

    async def load_client(
        self, server_id: str, *, id: str | None = None, client_id: str | None = None
    ) -> LiveClient:
        key = {"id": id} if id else {"clientId": client_id}
        body = {"mcpServerId": server_id, **key}
        return await self._ask(CLIENTS.load, body, partial(client_from_wire, server_id=server_id))

    async def search_clients(
        self,
        server_id: str,
        *,
        page_size: int = assumptions.MAX_PAGE_SIZE,
        **filters: Any,
    ) -> list[LiveClient]:
        """Every client of a server matching ``filters`` (name, text, clientId, tag, status,
        registrationMethod, sort): the first page says how many there are, the rest run concurrently.

        The pages must add up (every page but the last full, the same total on each, no client
        twice); when they do not, the list changed while it was read, and it is read again, at most
        SEARCH_READS times. A total past MAX_CLIENTS_PER_SERVER, more than MAX_SEARCH_PAGES pages, or
        more than MAX_SEARCH_BYTES of answers is an error before anything more is read."""
        request = {
            "mcpServerId": server_id,
            "limit": page_size,
            **{k: v for k, v in filters.items() if v is not None},
        }
        problem = ""
        for _ in range(SEARCH_READS):
            clients, problem = await self._read_clients(server_id, request)
            if not problem:
                return clients
            log.info("%s: %s; reading the clients of %s again", SEARCH, problem, server_id)
        raise unusable(SEARCH, f"the pages of clients do not add up ({problem}) in {SEARCH_READS} reads")

    async def _read_clients(self, server_id: str, request: Mapping[str, Any]) -> tuple[list[LiveClient], str]:
        """One read of every page: the clients, or a description of why the pages do not add up."""
        budget = Budget(MAX_SEARCH_BYTES)
        first, reported = await self._page(server_id, request, 0, budget)
        total = len(first) if reported is None else reported
        if total > MAX_CLIENTS_PER_SERVER:
            raise unusable(
                SEARCH,
                f"the server reports {total:,} clients, more than the {MAX_CLIENTS_PER_SERVER:,} this tool "
                "reads for one server",
            )
        if total <= len(first) or not first:
            return _unique(first, total)
        size = len(first)  # the page size the server actually used
        count = math.ceil(total / size)
        if count > MAX_SEARCH_PAGES:
            raise unusable(
                SEARCH,
                f"{total:,} clients in pages of {size} take {count:,} pages, more than the "
                f"{MAX_SEARCH_PAGES:,} this tool reads for one server",
            )
        rest = await gather_or_cancel(
            self._page(server_id, request, page, budget) for page in range(1, count)
        )
        clients = list(first)
        for page, (items, again) in enumerate(rest, start=1):
            expected = size if page < count - 1 else total - size * (count - 1)
            if again is not None and again != total:
                return [], f"the total went from {total} to {again}"
            if len(items) != expected:
                return [], f"page {page + 1} of {count} held {len(items)} clients, not {expected}"
            clients.extend(items)
        return _unique(clients, total)

    async def _page(
        self, server_id: str, request: Mapping[str, Any], page: int, budget: Budget
    ) -> tuple[list[LiveClient], int | None]:
        body = {**request, "page": page}
        return await self._ask(SEARCH, body, partial(clients_page, server_id=server_id), budget=budget)

    async def delete_clients(self, server_id: str, client_ids: Collection[str]) -> None:
        body = {"ids": list(client_ids), "mcpServerId": server_id}
        await self._call(DELETE_CLIENTS, body, idempotent=True)

    async def get_client_secret(self, server_id: str, client_id: str) -> Secret:
        data = await self._call(READ_SECRET, {"id": client_id, "mcpServerId": server_id}, idempotent=True)
        return _secret(data, READ_SECRET)

    async def rotate_client_secret(
        self, server_id: str, client_id: str, *, before: Secret | None = None
    ) -> Secret:
        """Rotate once. If the outcome is unknown, the current secret (compared with ``before``, read
        first unless given) tells whether the rotation happened."""
        body = {"id": client_id, "mcpServerId": server_id}
        if before is None:
            before = await self.get_client_secret(server_id, client_id)

        async def send() -> Secret:
            return _secret(await self._call(ROTATE_SECRET, body, idempotent=False), ROTATE_SECRET)

        async def lookup() -> Secret | None:
            current = await self.get_client_secret(server_id, client_id)
            if current == before:
                return None
            log.info("%s: outcome was unknown; the secret did change", ROTATE_SECRET)
            return current

        async def current(_rotated: Secret) -> Secret:
            # A rotation that was lost may have landed after ours: the sink gets the secret that counts.
            return await self.get_client_secret(server_id, client_id)

        return await self._at_most_once(ROTATE_SECRET, send, lookup, current)


def _unique(clients: list[LiveClient], total: int) -> tuple[list[LiveClient], str]:
    """The clients when they are ``total`` different ones, else why not."""
    if len({c.id for c in clients}) != len(clients):
        return [], "a client was listed twice"
    if len(clients) != total:
        return [], f"{len(clients)} clients were listed of a total of {total}"
    return clients, ""


def _secret(data: Mapping[str, Any], endpoint: Endpoint) -> Secret:
    cleartext = data.get("cleartext")
    if not isinstance(cleartext, str) or not cleartext:
        raise ApiError("the response has no secret", endpoint=endpoint)
    return Secret(cleartext)
