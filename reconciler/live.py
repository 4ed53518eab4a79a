"""How a LiveState is fetched from the API.

A fetch is one ``servers/all`` call and one ``resources/load`` call (MCP servers made as Resources,
as Descope's console makes them), then the clients of every server on either surface, searched
concurrently (bounded by the run's throttle) and paged: 2 + (pages of clients per server) calls in
all, never one call per object. The first failure cancels the searches still running: one bad answer ends the
fetch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import gather_or_cancel
from reconciler.descope.wire import FetchListener, LiveClient, LiveServer, LiveState, live_state

FetchProgress = Callable[[int, int], None]  # (servers whose clients are read, servers to read)


async def fetch_live_state(
    api: DescopeClient,
    *,
    server_names: Collection[str] | None = None,
    progress: FetchProgress | None = None,
    listener: FetchListener | None = None,
) -> LiveState:
    """Fetch every server, and the clients of those in ``server_names`` (all when None)."""
    # One surface after the other, so that a failing project reports the same call every time.
    servers = (*await api.load_all_servers(), *await api.load_all_resources())
    wanted = [s for s in servers if server_names is None or s.name in server_names]
    if listener is not None:
        listener.servers(servers, [s.id for s in wanted], complete=server_names is None)
    read = 0

    async def clients_of(server: LiveServer) -> tuple[LiveClient, ...]:
        nonlocal read
        found = tuple(await api.search_clients(server.id))
        read += 1
        if listener is not None:
            listener.clients(server.id, found)
        if progress is not None:
            progress(read, len(wanted))
        return found

    found = await gather_or_cancel(clients_of(server) for server in wanted)
    clients = {server.id: items for server, items in zip(wanted, found, strict=True)}
    live = live_state(servers, clients, complete=server_names is None)
    if listener is not None:
        listener.done(live)
    return live
