"""Live servers and clients as the API returns them, read tolerantly and written back whole.

Update is full replacement, so a live object keeps *every* field it was read with, unknown ones
included, and writing it back sends them all. Missing fields read as zero values. ``approvedScopes``
is held as a flat list whatever its wire shape, and the shape is remembered for writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from reconciler.scopes import ScopesFormat, read_scopes, write_scopes

# Fields Descope assigns or derives; never part of a create or a desired state.
SERVER_READ_ONLY = frozenset({"id"})
CLIENT_READ_ONLY = frozenset({"id", "clientId", "mcpServerId", "registrationType", "status"})


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


@dataclass(frozen=True)
class LiveServer:
    """An MCP Server as loaded: its id and name, and every field exactly as read."""

    id: str
    name: str
    fields: Mapping[str, Any] = field(repr=False)
    scopes_format: ScopesFormat | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> LiveServer:
        scopes, shape = read_scopes(data.get("approvedScopes"))
        fields = {**data, "approvedScopes": scopes} if shape else dict(data)
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            fields=_frozen(fields),
            scopes_format=shape,
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.fields.get("tags") or ())

    def to_wire(self, shape: ScopesFormat) -> dict[str, Any]:
        """The whole object for server/update, approvedScopes in ``shape``."""
        return server_to_wire(self.fields, shape)


def server_to_wire(fields: Mapping[str, Any], shape: ScopesFormat) -> dict[str, Any]:
    """A server's fields as the API takes them: approvedScopes converted to ``shape``."""
    data = dict(fields)
    if "approvedScopes" in data:
        data["approvedScopes"] = write_scopes(list(data["approvedScopes"] or []), shape)
    return data


@dataclass(frozen=True)
class LiveClient:
    """An MCP Server Client as loaded (never with its secret)."""

    id: str
    client_id: str
    server_id: str
    name: str
    fields: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], server_id: str = "") -> LiveClient:
        data = {key: value for key, value in data.items() if key != "cleartext"}
        return cls(
            id=str(data.get("id", "")),
            client_id=str(data.get("clientId", "")),
            server_id=str(data.get("mcpServerId") or server_id),
            name=str(data.get("name", "")),
            fields=_frozen(data),
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.fields.get("tags") or ())

    @property
    def registration_type(self) -> str:
        return str(self.fields.get("registrationType") or "")

    def to_wire(self) -> dict[str, Any]:
        """The whole object for server/client/update."""
        return {**self.fields, "id": self.id, "mcpServerId": self.server_id}


@dataclass(frozen=True)
class LiveState:
    """What the project holds: servers, and the clients of each, by server id."""

    servers: tuple[LiveServer, ...]
    clients: Mapping[str, tuple[LiveClient, ...]] = field(default_factory=dict)
    scopes_format: ScopesFormat | None = None
    complete: bool = True  # False when only some servers' clients were fetched (targeted plans)

    def clients_of(self, server_id: str) -> tuple[LiveClient, ...]:
        return self.clients.get(server_id, ())
