"""The emulator's Starlette app: the /v1/mgmt/mcp and /v1/mgmt/resource* endpoints, bearer auth, error
bodies, admin surface.

A /v1 request goes through, in order: counting, the rate limit (a 429 before anything else), latency,
auth, the endpoint lookup, a fault before handling, the strict check of the body (when on), the
handling itself, the state file write, and a fault after the commit. The admin surface (/emulator/*)
needs the same bearer but skips the rest, strict mode included: a test stages any state through it.

Answers carry ``approvedScopes`` as the categorized object by default, the only shape Descope's Go SDK
can decode (tests/data/go_sdk_mcp_types.md); the guide's flat list is a start-up option.

The Resources surface (``reconciler.emulator.resources``) goes through the same pipeline. Its loads are
GET with query arguments, its writes POST; a Resource of type mcp has clients through the unchanged
/v1/mgmt/mcp/server/client* endpoints. Whether the MCP server endpoints also see Resources is the
``resource_surface`` setting: ``isolated`` (neither surface sees the other's objects) or ``projected``
(servers/all and server/load also answer each Resource of type mcp as an MCP server object).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reconciler.descope import assumptions
from reconciler.emulator import console, resources
from reconciler.emulator.faults import STATUS_DROPPED, FaultInjector, RateLimiter, Traffic, apply_latency
from reconciler.emulator.store import (
    ApiFailure,
    Client,
    Owner,
    Resource,
    Server,
    Store,
    check,
    invalid,
    json_kind,
    not_found,
    optional_str,
    required_str,
)
from reconciler.scopes import ScopesFormat, write_scopes

V1_PREFIX = "mgmt/mcp/"
# The Resources surface, under /v1/mgmt/ (its endpoints keep that part of the path as their name), and
# the method of each; every endpoint of V1_PREFIX takes POST.
RESOURCES_PREFIX = "mgmt/"
RESOURCE_METHODS = {
    "resource/create": "POST",
    "resource/update": "POST",
    "resource/delete": "POST",
    "resource/load": "GET",
    "resource/load/uri": "GET",
    "resources/load": "GET",
}
ResourceSurface = Literal["isolated", "projected"]
V1_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Not published: the error code of an injected 5xx, so that a log shows it was the emulator's doing.
FAULT_CODE = "E000500"
# "1" turns strict mode on for every emulator that is not told otherwise, in process or a subprocess.
STRICT_VARIABLE = "MCP_RECONCILER_EMULATOR_STRICT"
# What strict mode refuses in a write, by endpoint: the name its messages give the body, and the fields
# Descope assigns. Descope's Go SDK sends none of them: a client's request type has no clientId,
# registrationType or status (a secret is never a field), and a new server's id is Descope's to give.
# A server update needs its id (the key), and its other fields are all writable.
CLIENT_ASSIGNED = ("clientId", "registrationType", "status", "cleartext")
STRICT_READ_ONLY: dict[str, tuple[str, tuple[str, ...]]] = {
    "server/create": ("server", ("id",)),
    "server/client/create": ("client", CLIENT_ASSIGNED),
    "server/client/update": ("client", CLIENT_ASSIGNED),
    # A Resource's update is keyed by its id and may send back the version and times it loaded.
    "resource/create": ("resource", ("id", "version", "createdTime", "modifiedTime")),
}


def strict_by_default() -> bool:
    """Whether an emulator not told otherwise is strict: ``MCP_RECONCILER_EMULATOR_STRICT=1``."""
    return os.environ.get(STRICT_VARIABLE) == "1"


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How an emulator behaves; ``rate_limit`` is (N requests, per SECONDS).

    ``strict`` refuses (400) a write that carries a field Descope assigns (``STRICT_READ_ONLY``), even
    an empty one, where a lenient emulator ignores it; its default comes from ``STRICT_VARIABLE``.
    ``resource_surface`` says whether the MCP server endpoints see Resources (module docstring).
    """

    project_id: str = "P2MCPRECONCILERDEMO"
    management_key: str = field(repr=False)  # never in a repr, so never in a log line
    state_file: Path | None = None
    latency_ms: float = 0
    rate_limit: tuple[int, float] | None = None
    fault_rate: float = 0
    slow_rate: float = 0  # chance that an answer comes late by slow_ms, past a client's timeout
    slow_ms: float = 0
    fault_after_commit_rate: float = 0
    seed: int | None = None
    scopes_format: ScopesFormat = "categorized"
    strict: bool = field(default_factory=strict_by_default)
    max_page_size: int = assumptions.MAX_PAGE_SIZE
    resource_surface: ResourceSurface = "isolated"

    def __post_init__(self) -> None:
        if not self.project_id or not self.management_key:
            raise ValueError("the emulator needs a project id and a management key")
        rates = (self.fault_rate, self.fault_after_commit_rate, self.slow_rate)
        if not all(0 <= rate <= 1 for rate in rates):
            raise ValueError("fault rates are probabilities: between 0 and 1")
        if self.latency_ms < 0 or self.slow_ms < 0 or self.max_page_size < 1:
            raise ValueError("latency_ms must not be negative and max_page_size must be at least 1")
        if self.scopes_format not in ("list", "categorized"):
            raise ValueError(f"scopes_format must be 'list' or 'categorized', not {self.scopes_format!r}")
        if self.rate_limit is not None and (self.rate_limit[0] < 1 or self.rate_limit[1] <= 0):
            raise ValueError("rate_limit must be (N >= 1 requests, per SECONDS > 0)")
        if self.resource_surface not in get_args(ResourceSurface):
            raise ValueError(
                f"resource_surface must be 'isolated' or 'projected', not {self.resource_surface!r}"
            )


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised to drop a connection mid-response.

    Over a socket uvicorn closes the connection and the caller's httpx raises its own transport error;
    in process, httpx's ASGITransport re-raises this one, which is why it is an httpx transport error too.
    """


class DroppedResponse(Response):
    """Headers that promise a body, then no body: the caller cannot tell whether the change happened."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - ASGI
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise DroppedConnection("the emulator dropped the connection after committing the change")


def error_response(
    status: int, code: str, *, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"errorCode": code, "errorDescription": description, "errorMessage": description}
    return JSONResponse(body, status_code=status, headers=headers)


def failure_response(failure: ApiFailure) -> Response:
    return error_response(failure.status, failure.code, description=failure.description)


def malformed(description: str) -> ApiFailure:
    return ApiFailure(
        assumptions.STATUS_BAD_REQUEST, assumptions.MALFORMED_REQUEST_CODE, description=description
    )


def reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object of the request; an empty body is taken as ``{}``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=reject_constant)
    except ValueError:  # UnicodeDecodeError too
        raise malformed("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise malformed(f"the request body must be a JSON object, got {json_kind(body)}")
    return body


def is_zero(value: Any) -> bool:
    if value is None or value is False or value in ("", [], {}):
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def omit_zero(value: Any) -> Any:
    """``value`` without zero-valued object fields, recursively (a field emptied by this goes too).
    One pass per object: every search answer goes through it, once per client."""
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = omit_zero(item)  # noqa: PLW2901 - the cleaned value replaces the raw one
                if not item:
                    continue
            elif is_zero(item):
                continue
            cleaned[key] = item
        return cleaned
    if isinstance(value, list):
        return [omit_zero(item) for item in value]
    return value


def on_wire(value: dict[str, Any]) -> dict[str, Any]:
    if not assumptions.RESPONSES_OMIT_ZERO_VALUES:
        return value
    cleaned: dict[str, Any] = omit_zero(value)
    return cleaned


def refuse_read_only(endpoint: str, body: dict[str, Any]) -> None:
    """A 400 naming every field of ``body`` that strict mode refuses on ``endpoint``."""
    what, keys = STRICT_READ_ONLY.get(endpoint, ("", ()))
    carried = [f"{what}.{key}" for key in keys if key in body]
    if len(carried) == 1:
        raise invalid(f"{carried[0]} is read-only: Descope assigns it")
    if carried:
        raise invalid(f"{', '.join(carried)} are read-only: Descope assigns them")


def with_scopes(fields: dict[str, Any], shape: ScopesFormat) -> dict[str, Any]:
    if not isinstance(fields.get("approvedScopes"), list):
        return dict(fields)
    return {**fields, "approvedScopes": write_scopes(fields["approvedScopes"], shape)}


def sort_key(name: str) -> Any:
    def key(client: Client) -> str:
        value = client.fields.get(name)
        return value if isinstance(value, str) else ""

    return key


def sorted_clients(clients: list[Client], sort: Any) -> list[Client]:
    """Clients in ``sort`` order (``[{"field", "desc"}]``, first key first); ties keep creation order."""
    sort = sort or []
    check(sort, [{"field": str, "desc": bool}], "sort")
    ordered = list(clients)
    for index, spec in reversed(list(enumerate(sort))):
        name = required_str(spec, "field", f"sort[{index}].field")
        ordered.sort(key=sort_key(name), reverse=bool(spec.get("desc")))  # Python's sort is stable
    return ordered


def paging(body: dict[str, Any], max_page_size: int) -> tuple[int, int]:
    """The page (from 0) and its size; a limit of 0 means the default, one too large the maximum."""
    check(body, {"page": int, "limit": int}, "search")
    page, limit = body.get("page") or 0, body.get("limit") or 0
    if page < 0 or limit < 0:
        raise invalid("page and limit must not be negative")
    return page, min(limit or assumptions.DEFAULT_PAGE_SIZE, max_page_size)


# Search arguments matched exactly, and the client field each one reads.
EXACT_FILTERS = {
    "name": "name",
    "clientId": "clientId",
    "status": "status",
    "registrationMethod": "registrationType",
}


def client_filter(body: dict[str, Any]) -> Any:
    """A predicate for the search filters in ``body``; an absent or empty filter matches everything."""
    arguments = {name: optional_str(body, key) for key, name in EXACT_FILTERS.items()}
    wanted = {name: value for name, value in arguments.items() if value is not None}
    text, tag = optional_str(body, "text"), optional_str(body, "tag")

    def matches(client: Client) -> bool:
        fields = client.fields
        if any(fields.get(name) != value for name, value in wanted.items()):
            return False
        if text is not None and text.casefold() not in str(fields.get("name") or "").casefold():
            return False
        return tag is None or tag in (fields.get("tags") or [])

    return matches


def client_view(client: Client) -> dict[str, Any]:
    return on_wire(dict(client.fields))


def resource_view(resource: Resource) -> dict[str, Any]:
    return on_wire(dict(resource.fields))


def endpoint_name(path: str) -> str:
    """The name of the endpoint at /v1/PATH: ``server/create`` for /v1/mgmt/mcp/server/create,
    ``resource/create`` for /v1/mgmt/resource/create, else the whole path (no such endpoint)."""
    if path.startswith(V1_PREFIX) and path.removeprefix(V1_PREFIX) not in RESOURCE_METHODS:
        return path.removeprefix(V1_PREFIX)
    if path.startswith(RESOURCES_PREFIX) and path.removeprefix(RESOURCES_PREFIX) in RESOURCE_METHODS:
        return path.removeprefix(RESOURCES_PREFIX)
    return f"/v1/{path}"


def allowed_methods(endpoint: str) -> tuple[str, ...]:
    method = RESOURCE_METHODS.get(endpoint, "POST")
    if method == "GET" and assumptions.RESOURCE_LOADS_ACCEPT_POST:
        return ("GET", "POST")
    return (method,)


Handler = Callable[["Emulator", dict[str, Any]], dict[str, Any]]


def deleting(operation: Callable[[Store, dict[str, Any]], None]) -> Handler:
    def handler(em: Emulator, body: dict[str, Any]) -> dict[str, Any]:
        operation(em.store, body)
        return dict(assumptions.DELETE_RESPONSE)

    return handler


# Endpoints that only read: a fault after commit never applies to them.
READS: dict[str, Handler] = {
    "server/load": lambda em, body: {"server": em.load_server(body)},
    "servers/all": lambda em, _: em.all_servers(),
    "server/client/load": lambda em, body: {"client": client_view(em.store.client(body)[1])},
    "server/clients/search": lambda em, body: em.search(body),
    "server/client/secret": lambda em, body: {"cleartext": em.store.client(body)[1].secret},
    "resource/load": lambda em, args: {"resource": resource_view(resources.resource_by_id(em.store, args))},
    "resource/load/uri": lambda em, args: {
        "resource": resource_view(resources.resource_by_uri(em.store, args))
    },
    "resources/load": lambda em, _: em.all_resources(),
}
MUTATIONS: dict[str, Handler] = {
    "server/create": lambda em, body: {"server": em.server_view(em.store.create_server(body))},
    "server/update": lambda em, body: {"server": em.server_view(em.store.update_server(body))},
    "server/delete": deleting(Store.delete_server),
    "servers/delete": deleting(Store.delete_servers),
    "server/client/create": lambda em, body: em.created_client(em.store.create_client(body)),
    "server/client/update": lambda em, body: {"client": client_view(em.store.update_client(body))},
    "server/client/delete": deleting(Store.delete_client),
    "server/clients/delete": deleting(Store.delete_clients),
    "server/client/secret/rotate": lambda em, body: {"cleartext": em.store.rotate_secret(body)},
    "resource/create": lambda em, body: {
        "resource": resource_view(resources.create_resource(em.store, body))
    },
    "resource/update": lambda em, body: {
        "resource": resource_view(resources.update_resource(em.store, body))
    },
    "resource/delete": deleting(resources.delete_resource),
}


class Emulator:
    """The state behind one app: objects, traffic counters, the rate limiter and the fault RNG."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store: Store = Store(config.state_file)
        self.traffic = Traffic()
        self.limiter: RateLimiter | None = RateLimiter(*config.rate_limit) if config.rate_limit else None
        self.faults = FaultInjector(
            fault_rate=config.fault_rate, after_commit_rate=config.fault_after_commit_rate, seed=config.seed
        )

    # --- views the handlers answer with

    def server_view(self, server: Server) -> dict[str, Any]:
        return on_wire(with_scopes(server.fields, self.config.scopes_format))

    def projected(self) -> list[Resource]:
        """The Resources the MCP server endpoints see: those of type mcp when projected, else none."""
        if self.config.resource_surface != "projected":
            return []
        return [resource for resource in self.store.resources.values() if resources.is_mcp(resource)]

    def projected_view(self, resource: Resource) -> dict[str, Any]:
        return on_wire(resources.projected_server(resource, self.config.scopes_format))

    def load_server(self, body: dict[str, Any]) -> dict[str, Any]:
        server_id = required_str(body, "id")
        if server_id in self.store.servers:
            return self.server_view(self.store.servers[server_id])
        resource = self.store.resources.get(server_id)
        if (
            resource is not None
            and self.config.resource_surface == "projected"
            and resources.is_mcp(resource)
        ):
            return self.projected_view(resource)
        raise not_found(f"no MCP server with id {server_id!r}")

    def all_servers(self) -> dict[str, Any]:
        servers = [self.server_view(server) for server in self.store.servers.values()]
        servers += [self.projected_view(resource) for resource in self.projected()]
        return {"servers": servers, "total": len(servers)}

    def all_resources(self) -> dict[str, Any]:
        views = [resource_view(resource) for resource in self.store.resources.values()]
        return {"resources": views, "total": len(views)}

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page of the owner's clients that match, and how many match in all."""
        server = self.store.owner(body)
        page, limit = paging(body, self.config.max_page_size)
        matches = sorted_clients(list(filter(client_filter(body), server.clients.values())), body.get("sort"))
        page_of = matches[page * limit : (page + 1) * limit]
        return {"clients": [client_view(client) for client in page_of], "total": len(matches)}

    def created_client(self, client: Client) -> dict[str, Any]:
        return {"id": client.id, "clientId": client.fields["clientId"], "cleartext": client.secret}

    # --- the /v1 pipeline

    def authorize(self, request: Request) -> None:
        """Check the bearer; no message repeats the key, and the key is compared in constant time."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        project, sep, key = token.strip().partition(":")
        if scheme.lower() != "bearer" or not sep or not project or not key:
            raise self.unauthorized("expected the header 'Authorization: Bearer <projectId>:<managementKey>'")
        if project != self.config.project_id:
            raise ApiFailure(
                assumptions.STATUS_FORBIDDEN,
                assumptions.UNAUTHORIZED_CODE,
                description=f"the bearer is for another project; this is project {self.config.project_id}",
            )
        if not hmac.compare_digest(key.encode(), self.config.management_key.encode()):
            raise self.unauthorized("the management key is not valid for this project")

    @staticmethod
    def unauthorized(description: str) -> ApiFailure:
        return ApiFailure(
            assumptions.STATUS_UNAUTHORIZED, assumptions.UNAUTHORIZED_CODE, description=description
        )

    async def v1(self, request: Request) -> Response:
        endpoint = endpoint_name(request.path_params["path"])
        entry = self.traffic.arrive(endpoint, method=request.method, path=request.url.path)
        try:
            response = await self.answer(request, endpoint)
        finally:
            self.traffic.leave()
        entry["status"] = STATUS_DROPPED if isinstance(response, DroppedResponse) else response.status_code
        return response

    async def answer(self, request: Request, endpoint: str) -> Response:
        retry_after = self.limiter.admit() if self.limiter else None
        if retry_after is not None:
            self.traffic.rate_limited += 1
            return error_response(
                429,
                assumptions.RATE_LIMITED_CODE,
                description="rate limit exceeded",
                headers={"Retry-After": str(retry_after)},
            )
        late = self.faults.slow(self.config.slow_rate)
        self.traffic.slowed += late
        await apply_latency(self.config.latency_ms + (self.config.slow_ms if late else 0))
        try:
            self.authorize(request)
            handler = self.handler(request, endpoint)
            if (status := self.faults.before()) is not None:
                self.traffic.faults_before += 1
                return error_response(
                    status, FAULT_CODE, description="injected fault before handling the request"
                )
            body = await arguments(request)
            if self.config.strict:
                refuse_read_only(endpoint, body)
            result = handler(self, body)
        except ApiFailure as failure:
            return failure_response(failure)
        if endpoint in MUTATIONS:
            return self.committed(result)
        return JSONResponse(result)

    def handler(self, request: Request, endpoint: str) -> Handler:
        handler = READS.get(endpoint) or MUTATIONS.get(endpoint)
        if handler is None:
            raise ApiFailure(
                404, assumptions.MALFORMED_REQUEST_CODE, description=f"no such endpoint: {endpoint}"
            )
        methods = allowed_methods(endpoint)
        if request.method not in methods:
            raise ApiFailure(
                405,
                assumptions.MALFORMED_REQUEST_CODE,
                description=f"{endpoint} takes {' or '.join(methods)} only",
            )
        return handler

    def committed(self, result: dict[str, Any]) -> Response:
        """Persist a mutation, then answer, or fail as if the answer were lost on its way back."""
        self.store.save()
        fault = self.faults.after_commit()
        if fault is None:
            return JSONResponse(result)
        self.traffic.faults_after_commit += 1
        if fault.status is None:
            return DroppedResponse()
        return error_response(
            fault.status, FAULT_CODE, description="injected fault after committing the change"
        )

    # --- the admin surface

    def reset(self, body: dict[str, Any]) -> dict[str, Any]:
        """Forget traffic (and restart the fault series); unless ``countersOnly``, forget objects too."""
        self.traffic.clear()
        if self.limiter is not None:
            self.limiter.clear()
        self.faults.reseed()
        if not body.get("countersOnly"):
            self.store.clear()
            self.store.save()
        return {}

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        servers, seeded = self.store.seed(body)
        self.store.save()
        return {
            "servers": [seed_summary(server) for server in servers],
            "resources": [seed_summary(resource) for resource in seeded],
        }

    def state(self) -> dict[str, Any]:
        """Every object as stored (not zero-omitted), clients with their secrets: seed() takes it back."""
        servers = [
            with_clients(with_scopes(server.fields, self.config.scopes_format), server)
            for server in self.store.servers.values()
        ]
        found = [with_clients(dict(resource.fields), resource) for resource in self.store.resources.values()]
        return {"servers": servers, "resources": found}

    def console(self, body: dict[str, Any]) -> dict[str, Any]:
        """A hand edit, as made in Descope's console (``reconciler.emulator.console``)."""
        return console.handle(self.store, body, shape=self.config.scopes_format)

    def admin(self, action: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                self.authorize(request)
                return JSONResponse(action(await read_body(request)))
            except ApiFailure as failure:
                return failure_response(failure)

        return endpoint


def with_clients(fields: dict[str, Any], owner: Owner) -> dict[str, Any]:
    return {**fields, "clients": [{**c.fields, "secret": c.secret} for c in owner.clients.values()]}


async def arguments(request: Request) -> dict[str, Any]:
    """A call's arguments: the query of a GET (which has no body), else the JSON body, over the query
    for a load that also answers POST."""
    query = dict(request.query_params)
    if request.method == "GET":
        return query
    body = await read_body(request)
    loads = RESOURCE_METHODS.get(endpoint_name(request.path_params["path"])) == "GET"
    return {**query, **body} if loads else body


def seed_summary(server: Owner) -> dict[str, Any]:
    clients = [
        {"id": c.id, "clientId": c.fields["clientId"], "name": c.fields.get("name")}
        for c in server.clients.values()
    ]
    return {"id": server.id, "name": server.fields.get("name"), "clients": clients}


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, wrong method) in the API's error shape."""
    status, detail = (exc.status_code, exc.detail) if isinstance(exc, HTTPException) else (500, "failed")
    description = f"{request.method} {request.url.path}: {detail}"
    return error_response(status, assumptions.MALFORMED_REQUEST_CODE, description=description)


def create_app(config: EmulatorConfig) -> Starlette:
    """The ASGI app of an emulator; its state is ``app.state.emulator``."""
    emulator = Emulator(config)
    log = emulator.admin(lambda _: {"requests": emulator.traffic.requests()})
    routes = [
        Route("/v1/{path:path}", emulator.v1, methods=V1_METHODS),
        Route("/emulator/stats", emulator.admin(lambda _: emulator.traffic.stats()), methods=["GET"]),
        Route("/emulator/requests", log, methods=["GET"]),
        Route("/emulator/reset", emulator.admin(emulator.reset), methods=["POST"]),
        Route("/emulator/seed", emulator.admin(emulator.seed), methods=["POST"]),
        Route("/emulator/state", emulator.admin(lambda _: emulator.state()), methods=["GET"]),
        Route("/emulator/console", emulator.admin(emulator.console), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.emulator = emulator
    return app
