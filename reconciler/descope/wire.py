"""Live servers and clients as the API returns them, read tolerantly and written back whole.

Update is full replacement, so a live object keeps *every* field it was read with, unknown ones
included, and writing it back sends them all. Missing fields read as zero values. ``approvedScopes``
is held as a flat list whatever its wire shape, and the shape is remembered for writing.

Tolerant is not credulous: an answer may come from a broken proxy or an attacker. :func:`decode`
takes strict JSON only (no NaN, no unpaired surrogates, at most ``MAX_JSON_DEPTH`` deep), and the
fields the reconciler itself reads (ids, names, tags, URL lists, scopes, settings objects) must have
their documented types, or :class:`WireError` says where (``servers[3].name``) and what was found,
never the value. Fields nobody reads here are kept as they came.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from reconciler.scopes import CATEGORIES, ScopesFormat, read_scopes, write_scopes

# A server or client nests about 5 levels (server > cimdSettings > domainPolicies > policies > item),
# an answer 2 more; 64 is ample, and keeps every later recursive walk (json.dumps of fingerprints
# and saved plans, deepdiff) far from Python's recursion limit of 1,000.
MAX_JSON_DEPTH = 64

# Field names some clients of the live API have seen spelled otherwise (a production client reads
# ``loginPageUrl``); read as the name Descope's reference and Go SDK use, which is the one written.
SPELLING_VARIANTS = {"loginPageUrl": "loginPageURL"}

# The types of the fields the reconciler reads; anything else is kept as it came.
SERVER_TEXT = ("id", "name")
CLIENT_TEXT = ("id", "clientId", "mcpServerId", "name", "registrationType", "status")
SERVER_TEXT_LISTS = ("tags", "audienceWhitelist", "approvedCallbackUrls")
CLIENT_TEXT_LISTS = ("tags", "scopes", "approvedCallbackUrls", "allowedTenants")
SERVER_OBJECTS = ("dynamicRegistration", "cimdSettings", "sessionSettings")

Redact = Callable[[str], str]


class WireError(ValueError):
    """An answer that is not JSON or not of the expected shape; names the place, never the value."""


def decode(body: bytes, redact: Redact | None = None) -> dict[str, Any]:
    """The JSON object in ``body``, every string (keys too) passed through ``redact``."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise WireError(f"the response is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:  # invalid JSON or UTF-8, NaN or Infinity, an integer of over 4,300 digits
        raise WireError("the response is not valid JSON") from None
    if not isinstance(data, dict):
        raise WireError(f"the response is {kind_of(data)}, not a JSON object")
    if _verbatim(body, redact):
        _check_shape(data)
    else:
        _clean(data, redact)
    return data


def _verbatim(body: bytes, redact: Redact | None) -> bool:
    """Whether no string of ``body`` needs a look of its own: with no escape sequence, every decoded
    string (keys too) stands in the body as it is, so none holds a lone surrogate (only a ``\\u``
    escape can make one), and when the whole body holds nothing to redact, neither does any string.
    A large answer is then checked in one pass over its text, not one call per string."""
    if b"\\" in body:
        return False
    if redact is None:
        return True
    text = body.decode("utf-8")  # json.loads has decoded it already: valid UTF-8
    return redact(text) == text


def _check_shape(data: dict[str, Any]) -> None:
    """The depth and number checks of :func:`_clean`, for an answer whose strings need none."""
    # json.loads makes plain dicts, lists and floats (no subclass): exact type tests, a large answer
    # holding tens of thousands of values.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise WireError(f"the response is nested more than {MAX_JSON_DEPTH} levels deep")
        for value in node.values() if type(node) is dict else node:
            if type(value) is dict or type(value) is list:
                stack.append((value, depth + 1))
            elif type(value) is float and not math.isfinite(value):
                raise WireError("the response holds a number too large for a float")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _clean(data: dict[str, Any], redact: Redact | None) -> None:
    """Check depth and Unicode and redact strings, in place and without recursion."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise WireError(f"the response is nested more than {MAX_JSON_DEPTH} levels deep")
        keys: list[Any] = list(node) if isinstance(node, dict) else list(range(len(node)))
        for key in keys:
            value = node[key]
            if isinstance(value, str):
                node[key] = _text(value, redact)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))
            elif isinstance(value, float) and not math.isfinite(value):
                raise WireError("the response holds a number too large for a float")
            if isinstance(node, dict) and (clean := _text(key, redact)) != key:
                node[clean] = node.pop(key)


def _text(text: str, redact: Redact | None) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise WireError("the response holds text that is not valid Unicode (a lone surrogate)") from None
    return redact(text) if redact else text


JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: a bool is an int to Python
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "an object"),
)


def kind_of(value: Any) -> str:
    """What a JSON value is, for messages (never the value itself)."""
    if value is None:
        return "null"
    return next((name for kind, name in JSON_KINDS if isinstance(value, kind)), f"a {type(value).__name__}")


def _wrong(where: str, value: Any, expected: str) -> WireError:
    return WireError(f"unexpected response: {where} is {kind_of(value)}, not {expected}")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong(where, value, "an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """A list; null or missing reads as empty (zero values may be left out)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(where, value, "a list")
    return value


def optional_text(data: Mapping[str, Any], key: str, *, where: str = "") -> str:
    """A string field; null or missing reads as empty."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(f"{where}.{key}" if where else key, value, "a string")
    return value


def required_text(data: Mapping[str, Any], key: str, *, where: str = "") -> str:
    """A string field that must be there and not empty (the id of what was just created, say)."""
    if not data.get(key):
        raise WireError(f"the response has no {f'{where}.{key}' if where else key}")
    return optional_text(data, key, where=where)


def _check_text_lists(data: Mapping[str, Any], names: tuple[str, ...], where: str) -> None:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise _wrong(f"{where}.{name}", value, "a list")
        for n, item in enumerate(value):
            if not isinstance(item, str):
                raise _wrong(f"{where}.{name}[{n}]", item, "a string")


def _check_scopes(value: Any, where: str) -> None:
    if isinstance(value, dict):
        groups = [(f"{where}.{c}", _list(value.get(c), f"{where}.{c}")) for c in CATEGORIES]
    else:
        groups = [(where, _list(value, f"{where} (a list or an object of categories)"))]
    for place, items in groups:
        for n, item in enumerate(items):
            scope = _object(item, f"{place}[{n}]")
            optional_text(scope, "name", where=f"{place}[{n}]")
            _check_text_lists(scope, ("values",), f"{place}[{n}]")


def _check_server(data: Mapping[str, Any], where: str) -> None:
    for name in SERVER_TEXT:
        optional_text(data, name, where=where)
    _check_text_lists(data, SERVER_TEXT_LISTS, where)
    _check_scopes(data.get("approvedScopes"), f"{where}.approvedScopes")
    for name in SERVER_OBJECTS:
        if data.get(name) is not None:
            _object(data[name], f"{where}.{name}")
    cimd = data.get("cimdSettings") or {}
    if cimd.get("domainPolicies") is not None:
        place = f"{where}.cimdSettings.domainPolicies"
        policies = _object(cimd["domainPolicies"], place).get("policies")
        for n, item in enumerate(_list(policies, f"{place}.policies")):
            optional_text(
                _object(item, f"{place}.policies[{n}]"), "domainPattern", where=f"{place}.policies[{n}]"
            )


RESOURCE_TEXT = ("id", "name", "description", "uri", "type", "version")
RESOURCE_SETTINGS_OBJECTS = ("dynamicRegistration", "cimdSettings", "sessionSettings")


def check_resource(data: Mapping[str, Any], where: str) -> None:
    """The fields of a Resource that the reconciler reads have their documented types."""
    _object(data, where)
    for name in RESOURCE_TEXT:
        optional_text(data, name, where=where)
    if data.get("scopes") is not None:
        _object(data["scopes"], f"{where}.scopes")
        _check_scopes(data["scopes"], f"{where}.scopes")
    if data.get("dynamicRegistrationSettings") is None:
        return
    place = f"{where}.dynamicRegistrationSettings"
    settings = _object(data["dynamicRegistrationSettings"], place)
    _check_text_lists(settings, ("tags",), place)
    optional_text(settings, "loginPageURL", where=place)
    for name in RESOURCE_SETTINGS_OBJECTS:
        if settings.get(name) is not None:
            _object(settings[name], f"{place}.{name}")


def _check_client(data: Mapping[str, Any], where: str) -> None:
    for name in CLIENT_TEXT:  # optional_text's test, in line: a search answers thousands of clients
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise _wrong(f"{where}.{name}", value, "a string")
    _check_text_lists(data, CLIENT_TEXT_LISTS, where)


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


# The two management surfaces an MCP server can live on: the MCP Server API (``/v1/mgmt/mcp/server*``,
# ids ``MS…``) and Resources of type mcp (``/v1/mgmt/resource*``, ids ``RS…``, what the console makes).
Surface = Literal["mcp-servers", "resources"]
SURFACES: tuple[Surface, ...] = ("mcp-servers", "resources")


@dataclass(frozen=True)
class LiveServer:
    """An MCP server as loaded: its id and name, every field exactly as read (a Resource's in the
    shape of an MCP server, see ``reconciler.descope.resource_wire``), and the surface it lives on."""

    id: str
    name: str
    fields: Mapping[str, Any] = field(repr=False)
    scopes_format: ScopesFormat | None = None
    surface: Surface = "mcp-servers"

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], where: str = "server") -> LiveServer:
        """A server from its wire object; :class:`WireError` if a field it reads has the wrong type."""
        _check_server(_object(data, where), where)
        scopes, shape = read_scopes(data.get("approvedScopes"))
        fields = {**data, "approvedScopes": scopes} if shape else dict(data)
        for variant, canonical in SPELLING_VARIANTS.items():
            if variant in fields:  # read as the canonical name, so that it is written back as that
                value = fields.pop(variant)
                fields.setdefault(canonical, value)
        return cls(
            id=optional_text(data, "id", where=where),
            name=optional_text(data, "name", where=where),
            fields=_frozen(fields),
            scopes_format=shape,
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.fields.get("tags") or ())


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
    surface: None = None  # clients use one set of endpoints, whatever their server's surface

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], server_id: str = "", *, where: str = "client") -> LiveClient:
        """A client from its wire object; :class:`WireError` if a field it reads has the wrong type."""
        _check_client(_object(data, where), where)  # so each of these is a string, or None
        fields = dict(data)
        fields.pop("cleartext", None)
        return cls(
            id=fields.get("id") or "",
            client_id=fields.get("clientId") or "",
            server_id=fields.get("mcpServerId") or server_id,
            name=fields.get("name") or "",
            fields=MappingProxyType(fields),
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.fields.get("tags") or ())

    @property
    def registration_type(self) -> str:
        return str(self.fields.get("registrationType") or "")


@dataclass(frozen=True)
class LiveState:
    """What the project holds: servers, and the clients of each, by server id."""

    servers: tuple[LiveServer, ...]
    clients: Mapping[str, tuple[LiveClient, ...]] = field(default_factory=dict)
    scopes_format: ScopesFormat | None = None
    complete: bool = True  # False when only some servers' clients were fetched (targeted plans)

    def clients_of(self, server_id: str) -> tuple[LiveClient, ...]:
        return self.clients.get(server_id, ())

    @property
    def scopes_shape(self) -> ScopesFormat | None:
        """The approvedScopes shape the project's API answers in, as fetched or as its servers show."""
        return self.scopes_format or api_scopes_shape(self.servers)


class FetchListener(Protocol):
    """Told what a fetch reads as it reads it (reconciler.prefetch streams it to another process)."""

    def servers(self, servers: tuple[LiveServer, ...], reading: Sequence[str], *, complete: bool) -> None:
        """Every server is read; the clients of those in ``reading`` (ids) are read next (of every
        server when ``complete``)."""

    def clients(self, server_id: str, clients: tuple[LiveClient, ...]) -> None:
        """The clients of ``server_id`` are read."""

    def done(self, live: LiveState) -> None:
        """All is read: ``live`` is what the fetch returns (before its connections close)."""


def live_state(
    servers: tuple[LiveServer, ...], clients: dict[str, tuple[LiveClient, ...]], *, complete: bool
) -> LiveState:
    """The LiveState of what was read (``clients`` is viewed, not copied: it may still be filling)."""
    return LiveState(servers, MappingProxyType(clients), api_scopes_shape(servers), complete=complete)


def api_scopes_shape(servers: Iterable[LiveServer]) -> ScopesFormat | None:
    """The approvedScopes shape the MCP Server API answers in, as its servers show it (a Resource's
    scopes are always categorized, so they tell nothing of it)."""
    return next((s.scopes_format for s in servers if s.scopes_format and s.surface == "mcp-servers"), None)


# ---- whole answers -----------------------------------------------------------------------------


def servers_from_wire(data: Mapping[str, Any]) -> list[LiveServer]:
    """The servers of a ``servers/all`` answer."""
    items = _list(data.get("servers"), "servers")
    return [LiveServer.from_wire(item, f"servers[{n}]") for n, item in enumerate(items)]


def server_from_wire(data: Mapping[str, Any], key: str = "server") -> LiveServer:
    """The server of an answer that holds one (missing reads as an empty server, as before)."""
    value = data.get(key)
    return LiveServer.from_wire({} if value is None else value, key)


def client_from_wire(data: Mapping[str, Any], server_id: str, *, key: str = "client") -> LiveClient:
    value = data.get(key)
    return LiveClient.from_wire({} if value is None else value, server_id, where=key)


def clients_page(data: Mapping[str, Any], server_id: str) -> tuple[list[LiveClient], int | None]:
    """The clients of one search page, and the total the page reports (None when left out)."""
    items = _list(data.get("clients"), "clients")
    clients = [LiveClient.from_wire(item, server_id, where=f"clients[{n}]") for n, item in enumerate(items)]
    return clients, _count(data.get("total"), "total")


def _count(value: Any, where: str) -> int | None:
    """A count: a whole number, or the decimal string protobuf's JSON writes int64 as."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise _wrong(where, value, "a count (a whole number of at least 0)")
