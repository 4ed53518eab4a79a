"""The API calls that carry out each kind's changes: a registry of per-kind operations, as in decK.

The applier looks a change's kind and surface up in :data:`OPERATIONS` (and, for kinds that hold
a secret, the kind in :data:`SECRET_OPERATIONS`) instead of branching on them; adding a kind means
adding its operations here beside its descriptor in ``reconciler.kinds``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from reconciler.descope.client import DescopeClient
from reconciler.descope.wire import LiveServer, Surface
from reconciler.diff import overlay
from reconciler.kinds import CLIENT, KINDS, SERVER, Kind, KindDescriptor, LiveObject
from reconciler.secret import Secret
from reconciler.tags import ROTATION_PREFIX


@dataclass(frozen=True)
class Created:
    """What a create made: its id, its public client id (for kinds that have one), its secret."""

    id: str
    client_id: str = ""
    secret: Secret | None = None


class Operations(Protocol):
    """Create, update and delete one kind's objects; ``parent_id`` is None for a root kind."""

    async def create(
        self,
        api: DescopeClient,
        parent_id: str | None,
        fields: Mapping[str, Any],
        *,
        exclude_ids: Collection[str],
    ) -> Created: ...

    async def update(
        self, api: DescopeClient, parent_id: str | None, live: LiveObject, desired: Mapping[str, Any]
    ) -> None: ...

    async def delete_many(self, api: DescopeClient, parent_id: str | None, ids: list[str]) -> None: ...


class SecretOperations(Protocol):
    """Read, rotate and mark the secret of a kind that holds one."""

    async def read_secret(self, api: DescopeClient, *, parent_id: str, object_id: str) -> Secret: ...

    async def rotate_secret(
        self, api: DescopeClient, *, parent_id: str, object_id: str, before: Secret
    ) -> Secret: ...

    async def record_rotation(
        self,
        api: DescopeClient,
        *,
        parent_id: str,
        object_id: str,
        marker: str,
        tags: Sequence[str] | None = None,
    ) -> None: ...


class _Servers:
    """MCP servers on one surface: the client's calls for that surface (MCP Server API or Resources)."""

    # Each picks the call from the client when it is made (so a test can stand in for one).
    def __init__(
        self,
        create: Callable[[DescopeClient], Callable[..., Awaitable[LiveServer]]],
        update: Callable[[DescopeClient], Callable[[Mapping[str, Any]], Awaitable[LiveServer]]],
        delete: Callable[[DescopeClient], Callable[[Collection[str]], Awaitable[None]]],
    ) -> None:
        self._create, self._update, self._delete = create, update, delete

    async def create(
        self,
        api: DescopeClient,
        parent_id: str | None,  # noqa: ARG002 - servers have no parent
        fields: Mapping[str, Any],
        *,
        exclude_ids: Collection[str],
    ) -> Created:
        created = await self._create(api)(_writable(SERVER, fields), exclude_ids=exclude_ids)
        return Created(created.id)

    async def update(
        self,
        api: DescopeClient,
        parent_id: str | None,  # noqa: ARG002 - servers have no parent
        live: LiveObject,
        desired: Mapping[str, Any],
    ) -> None:
        await self._update(api)(overlay(live.fields, desired))

    async def delete_many(
        self,
        api: DescopeClient,
        parent_id: str | None,  # noqa: ARG002 - servers have no parent
        ids: list[str],
    ) -> None:
        await self._delete(api)(ids)


class _Clients:
    async def create(
        self,
        api: DescopeClient,
        parent_id: str | None,
        fields: Mapping[str, Any],
        *,
        exclude_ids: Collection[str],
    ) -> Created:
        created = await api.create_client(parent_id or "", _writable(CLIENT, fields), exclude_ids=exclude_ids)
        return Created(created.id, created.client_id, created.secret)

    async def update(
        self, api: DescopeClient, parent_id: str | None, live: LiveObject, desired: Mapping[str, Any]
    ) -> None:
        await api.update_client(
            _client_update(overlay(live.fields, desired), client_id=live.id, server_id=parent_id or "")
        )

    async def delete_many(self, api: DescopeClient, parent_id: str | None, ids: list[str]) -> None:
        await api.delete_clients(parent_id or "", ids)

    async def read_secret(self, api: DescopeClient, *, parent_id: str, object_id: str) -> Secret:
        return await api.get_client_secret(parent_id, object_id)

    async def rotate_secret(
        self, api: DescopeClient, *, parent_id: str, object_id: str, before: Secret
    ) -> Secret:
        return await api.rotate_client_secret(parent_id, object_id, before=before)

    async def record_rotation(
        self,
        api: DescopeClient,
        *,
        parent_id: str,
        object_id: str,
        marker: str,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Remember the applied rotation marker in the client's tags, so the next plan does not
        rotate again; nothing to do when exactly this marker, and no other, is recorded already
        (in ``tags`` when the caller knows them, else in the client as loaded now)."""
        # Loaded once when the caller knows no tags; loaded fresh for the update (a full replacement)
        # when the caller's tags may be old.
        live = await api.load_client(parent_id, id=object_id) if tags is None else None
        recorded = live.tags if live is not None else tags or ()
        if [t for t in recorded if t.startswith(ROTATION_PREFIX)] == [ROTATION_PREFIX + marker]:
            return
        if live is None:
            live = await api.load_client(parent_id, id=object_id)
        kept = [t for t in live.tags if not t.startswith(ROTATION_PREFIX)]
        fields = {**live.fields, "tags": [*kept, ROTATION_PREFIX + marker]}
        await api.update_client(_client_update(fields, client_id=live.id, server_id=live.server_id))


def _writable(kind: KindDescriptor, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without those the API assigns (ids, the OAuth client id, registration type and
    status): what a create or update may send. Unknown fields the live object carries are kept."""
    return {key: value for key, value in fields.items() if key not in kind.read_only}


def _client_update(fields: Mapping[str, Any], *, client_id: str, server_id: str) -> dict[str, Any]:
    """The body of ``server/client/update``: the writable fields, keyed by the client's id and its
    server's (as Descope's Go SDK sends it: never clientId, registrationType or status)."""
    return {**_writable(CLIENT, fields), "id": client_id, "mcpServerId": server_id}


_CLIENTS = _Clients()
# By kind and, for a kind with surfaces, the surface (an MCP server made as a Resource is written
# through the Resources endpoints); None for a kind with one set of endpoints.
OPERATIONS: Mapping[tuple[Kind, Surface | None], Operations] = MappingProxyType(
    {
        (Kind.SERVER, "mcp-servers"): _Servers(
            lambda api: api.create_server, lambda api: api.update_server, lambda api: api.delete_servers
        ),
        (Kind.SERVER, "resources"): _Servers(
            lambda api: api.create_resource, lambda api: api.update_resource, lambda api: api.delete_resources
        ),
        (Kind.CLIENT, None): _CLIENTS,
    }
)
SECRET_OPERATIONS: Mapping[Kind, SecretOperations] = MappingProxyType({Kind.CLIENT: _CLIENTS})


def operations_for(kind: Kind, surface: Surface | None) -> Operations:
    """The operations of ``kind`` on ``surface``; a change that names none (a client, or a server in
    a plan made before surfaces) is made on the kind's first surface."""
    return OPERATIONS[(kind, surface or next(iter(KINDS[kind].surfaces), None))]
