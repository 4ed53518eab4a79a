"""The Descope Management API client for MCP servers and their clients: the only module that imports httpx.

One async method per endpoint. Every call goes through the run's shared :class:`Throttle`. Errors
are translated here into the ``reconciler.errors`` tree (status, errorCode, a cut-short message;
never the key or a secret). Retries: a 429 always (it is answered before the mutation runs); 5xx
and transport failures only for calls that are safe to repeat. A create or rotate whose outcome is
unknown is never blindly repeated: the client looks first, so a retry cannot make a duplicate or
rotate twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler import assumptions
from reconciler.errors import (
    AmbiguousObject,
    ApiError,
    ApiUnavailable,
    BadRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    UsageError,
)
from reconciler.scopes import ScopesFormat
from reconciler.secret import Secret
from reconciler.throttle import Throttle
from reconciler.wire import LiveClient, LiveServer, server_to_wire

log = logging.getLogger("reconciler.api")

API_PREFIX = "/v1/mgmt/mcp/"
DEFAULT_BASE_URL = "https://api.descope.com"
REGIONAL_ID_LENGTH = 32
MESSAGE_LIMIT = 200


def resolve_base_url(project_id: str, environ: Mapping[str, str]) -> str:
    """DESCOPE_BASE_URL (or the Python SDK's DESCOPE_BASE_URI), else the project's regional host."""
    explicit = environ.get("DESCOPE_BASE_URL") or environ.get("DESCOPE_BASE_URI")
    if explicit:
        return explicit.rstrip("/")
    if len(project_id) >= REGIONAL_ID_LENGTH:
        return f"https://api.{project_id[1:5].lower()}.descope.com"
    return DEFAULT_BASE_URL


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; delays grow exponentially with full jitter."""

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    rate_limited_attempts: int = 12

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (failures - 1)))


@dataclass(frozen=True)
class CreatedClient:
    """What client creation returns. ``recovered``: the create's answer was lost and found again."""

    id: str
    client_id: str
    secret: Secret
    recovered: bool = False


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix (never raised out of this module)."""

    def __init__(self, error: ApiError, *, ambiguous: bool = False, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.ambiguous = ambiguous  # the request may have taken effect
        self.retry_after = retry_after  # set for 429


class _OutcomeUnknown(Exception):
    """A call that is not safe to repeat may or may not have taken effect."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class DescopeClient:
    """Async client of ``/v1/mgmt/mcp/*``. Use ``async with``; share one per run."""

    def __init__(
        self,
        *,
        project_id: str,
        management_key: str,
        base_url: str = DEFAULT_BASE_URL,
        throttle: Throttle | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        scopes_format: ScopesFormat = "list",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not project_id or not management_key:
            raise UsageError("a project ID and a management key are both required")
        self.project_id = project_id
        self.throttle = throttle or Throttle()
        self.retry = retry or RetryPolicy()
        self.scopes_format: ScopesFormat = scopes_format
        self.settle_seconds = timeout  # how long a lost request may still take to land
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {project_id}:{management_key}"},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=self.throttle.settings.concurrency),
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, project_id: str | None = None, **options: Any
    ) -> DescopeClient:
        """A client configured from DESCOPE_PROJECT_ID, DESCOPE_MANAGEMENT_KEY and DESCOPE_BASE_URL."""
        project = project_id or environ.get("DESCOPE_PROJECT_ID", "")
        key = environ.get("DESCOPE_MANAGEMENT_KEY", "")
        if not project:
            raise UsageError(
                "no Descope project ID: set DESCOPE_PROJECT_ID or projectId in the Project manifest"
            )
        if not key:
            raise UsageError("no management key: set DESCOPE_MANAGEMENT_KEY in the environment")
        options.setdefault("base_url", resolve_base_url(project, environ))
        return cls(project_id=project, management_key=key, **options)

    async def __aenter__(self) -> DescopeClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- servers -------------------------------------------------------------------------------

    async def load_all_servers(self) -> list[LiveServer]:
        data = await self._post("servers/all", {}, idempotent=True)
        servers = [LiveServer.from_wire(item) for item in data.get("servers") or []]
        seen = next((s.scopes_format for s in servers if s.scopes_format), None)
        if seen:
            self.scopes_format = seen  # write scopes in the shape this project's API uses
        return servers

    async def load_server(self, server_id: str) -> LiveServer:
        data = await self._post("server/load", {"id": server_id}, idempotent=True)
        return LiveServer.from_wire(data.get("server") or {})

    async def create_server(
        self, fields: Mapping[str, Any], *, exclude_ids: Collection[str] = ()
    ) -> LiveServer:
        """Create a server. If the outcome is unknown, a server of that name not in ``exclude_ids``
        (the ids known before) is taken as the one created, so a retry never makes a duplicate."""
        body = server_to_wire({k: v for k, v in fields.items() if k != "id"}, self.scopes_format)
        name = str(fields.get("name", ""))
        last: ApiError | None = None
        retried = False
        for failures in range(1, self.retry.attempts + 1):
            try:
                data = await self._post("server/create", body, idempotent=False)
                created = LiveServer.from_wire(data.get("server") or {})
                if retried:
                    await self._sweep_servers(name, {*exclude_ids, created.id})
                return created
            except _OutcomeUnknown as unknown:
                last = unknown.error
            found = [s for s in await self.load_all_servers() if s.name == name and s.id not in exclude_ids]
            if len(found) == 1:
                log.info("server/create: outcome was unknown; found the created server %s", found[0].id)
                return found[0]
            if len(found) > 1:
                ids = ", ".join(s.id for s in found)
                raise AmbiguousObject(f"several new servers named {name!r}: {ids}", endpoint="server/create")
            retried = True
            await self._sleep(self.retry.delay(failures, self._rng))
        raise _final(last, "server/create")

    async def update_server(self, server: Mapping[str, Any]) -> LiveServer:
        """Replace a server with ``server`` (the FULL object, with ``id``)."""
        body = {"server": server_to_wire(server, self.scopes_format)}
        data = await self._post("server/update", body, idempotent=True)
        return LiveServer.from_wire(data.get("server") or {})

    async def delete_server(self, server_id: str) -> None:
        """Delete a server (and its clients); one that is already gone counts as deleted."""
        try:
            await self._post("server/delete", {"id": server_id}, idempotent=True)
        except NotFound:
            log.debug("server/delete: %s was already gone", server_id)

    async def delete_servers(self, server_ids: Collection[str]) -> None:
        await self._post("servers/delete", {"ids": list(server_ids)}, idempotent=True)

    # ---- clients -------------------------------------------------------------------------------

    async def create_client(
        self, server_id: str, fields: Mapping[str, Any], *, exclude_ids: Collection[str] = ()
    ) -> CreatedClient:
        """Create a client and return its secret. If the outcome is unknown, a client of that name
        not in ``exclude_ids`` is taken as the one created and its secret is read back."""
        body = {**{k: v for k, v in fields.items() if k not in ("id", "clientId")}, "mcpServerId": server_id}
        name = str(fields.get("name", ""))
        last: ApiError | None = None
        retried = False
        for failures in range(1, self.retry.attempts + 1):
            try:
                data = await self._post("server/client/create", body, idempotent=False)
                created = CreatedClient(
                    str(data["id"]), str(data.get("clientId", "")), Secret(str(data["cleartext"]))
                )
                if retried:
                    await self._sweep_clients(server_id, name, {*exclude_ids, created.id})
                return created
            except _OutcomeUnknown as unknown:
                last = unknown.error
            except KeyError as missing:
                raise ApiError(f"the response has no {missing}", endpoint="server/client/create") from None
            found = [c for c in await self.search_clients(server_id, name=name) if c.id not in exclude_ids]
            if len(found) == 1:
                log.info(
                    "server/client/create: outcome was unknown; found the created client %s", found[0].id
                )
                secret = await self.get_client_secret(server_id, found[0].id)
                return CreatedClient(found[0].id, found[0].client_id, secret, recovered=True)
            if len(found) > 1:
                ids = ", ".join(c.id for c in found)
                raise AmbiguousObject(
                    f"several new clients named {name!r}: {ids}", endpoint="server/client/create"
                )
            retried = True
            await self._sleep(self.retry.delay(failures, self._rng))
        raise _final(last, "server/client/create")

    # A create that timed out may still land after the lookup that found nothing and the retry that
    # followed. Once the retry succeeded, wait as long as a request may take, look again, and delete
    # what the lost attempts made: nobody holds those objects' secrets, and they carry our name.

    async def _sweep_servers(self, name: str, keep: set[str]) -> None:
        await self._sleep(self.settle_seconds)
        extra = [s.id for s in await self.load_all_servers() if s.name == name and s.id not in keep]
        if extra:
            log.warning("server/create: deleting %d late duplicate(s) of %r: %s", len(extra), name, extra)
            await self.delete_servers(extra)

    async def _sweep_clients(self, server_id: str, name: str, keep: set[str]) -> None:
        await self._sleep(self.settle_seconds)
        extra = [c.id for c in await self.search_clients(server_id, name=name) if c.id not in keep]
        if extra:
            log.warning(
                "server/client/create: deleting %d late duplicate(s) of %r: %s", len(extra), name, extra
            )
            await self.delete_clients(server_id, extra)

    async def update_client(self, client: Mapping[str, Any]) -> LiveClient:
        """Replace a client's mutable fields with ``client`` (with ``id`` and ``mcpServerId``)."""
        data = await self._post("server/client/update", dict(client), idempotent=True)
        return LiveClient.from_wire(data.get("client") or {}, str(client.get("mcpServerId", "")))

    async def load_client(
        self, server_id: str, *, id: str | None = None, client_id: str | None = None
    ) -> LiveClient:
        key = {"id": id} if id else {"clientId": client_id}
        data = await self._post("server/client/load", {"mcpServerId": server_id, **key}, idempotent=True)
        return LiveClient.from_wire(data.get("client") or {}, server_id)

    async def search_clients(
        self,
        server_id: str,
        *,
        page_size: int = assumptions.MAX_PAGE_SIZE,
        **filters: Any,
    ) -> list[LiveClient]:
        """Every client of a server matching ``filters`` (name, text, clientId, tag, status,
        registrationMethod, sort): the first page says how many there are, the rest run concurrently."""
        request = {
            "mcpServerId": server_id,
            "limit": page_size,
            **{k: v for k, v in filters.items() if v is not None},
        }
        first = await self._post("server/clients/search", {**request, "page": 0}, idempotent=True)
        items = list(first.get("clients") or [])
        total = int(first.get("total") or 0)
        if items and total > len(items):
            size = len(items)  # the page size the server actually used
            pages = range(1, math.ceil(total / size))
            rest = await asyncio.gather(
                *(
                    self._post("server/clients/search", {**request, "page": page}, idempotent=True)
                    for page in pages
                )
            )
            for data in rest:
                items.extend(data.get("clients") or [])
        unique = {str(item.get("id")): item for item in items}  # a concurrent change can shift a page
        return [LiveClient.from_wire(item, server_id) for item in unique.values()]

    async def delete_client(self, server_id: str, client_id: str) -> None:
        """Delete a client by record id; one that is already gone counts as deleted."""
        try:
            await self._post(
                "server/client/delete", {"id": client_id, "mcpServerId": server_id}, idempotent=True
            )
        except NotFound:
            log.debug("server/client/delete: %s was already gone", client_id)

    async def delete_clients(self, server_id: str, client_ids: Collection[str]) -> None:
        body = {"ids": list(client_ids), "mcpServerId": server_id}
        await self._post("server/clients/delete", body, idempotent=True)

    async def get_client_secret(self, server_id: str, client_id: str) -> Secret:
        data = await self._post(
            "server/client/secret", {"id": client_id, "mcpServerId": server_id}, idempotent=True
        )
        return _secret(data, "server/client/secret")

    async def rotate_client_secret(
        self, server_id: str, client_id: str, *, before: Secret | None = None
    ) -> Secret:
        """Rotate once. If the outcome is unknown, the current secret (compared with ``before``, read
        first unless given) tells whether the rotation happened."""
        body = {"id": client_id, "mcpServerId": server_id}
        if before is None:
            before = await self.get_client_secret(server_id, client_id)
        last: ApiError | None = None
        retried = False
        for failures in range(1, self.retry.attempts + 1):
            try:
                answer = await self._post("server/client/secret/rotate", body, idempotent=False)
                rotated = _secret(answer, "server/client/secret/rotate")
            except _OutcomeUnknown as unknown:
                last = unknown.error
            else:
                if not retried:
                    return rotated
                # A rotation that timed out may land after ours: wait as long as a request may take,
                # then hand over whatever secret is current, so the sink gets the one that counts.
                await self._sleep(self.settle_seconds)
                return await self.get_client_secret(server_id, client_id)
            current = await self.get_client_secret(server_id, client_id)
            if current != before:
                log.info("server/client/secret/rotate: outcome was unknown; the secret did change")
                return current
            retried = True
            await self._sleep(self.retry.delay(failures, self._rng))
        raise _final(last, "server/client/secret/rotate")

    # ---- transport -----------------------------------------------------------------------------

    async def _post(self, endpoint: str, body: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST with retries: 429 always, other failures only when ``idempotent`` or surely unsent."""
        failures = limited = 0
        while True:
            try:
                return await self._attempt(endpoint, body)
            except _Retry as retry:
                if retry.retry_after is not None:
                    limited += 1
                    if limited > self.retry.rate_limited_attempts:
                        raise retry.error from None
                    self.throttle.pause(retry.retry_after)
                    continue
                if retry.ambiguous and not idempotent:
                    raise _OutcomeUnknown(retry.error) from None
                failures += 1
                if failures >= self.retry.attempts:
                    raise retry.error from None
                await self._sleep(self.retry.delay(failures, self._rng))

    async def _attempt(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self.throttle.slot():
            started = time.monotonic()
            try:
                response = await self._http.post(endpoint, json=body)
            except httpx.TransportError as exc:
                elapsed = (time.monotonic() - started) * 1000
                log.debug("POST %s -> %s (%.0f ms)", endpoint, type(exc).__name__, elapsed)
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                error = ApiUnavailable(_describe_transport(exc), endpoint=endpoint)
                raise _Retry(error, ambiguous=not unsent) from exc
            log.debug(
                "POST %s -> %d (%.0f ms)", endpoint, response.status_code, (time.monotonic() - started) * 1000
            )
        return _interpret(endpoint, response)


def _interpret(endpoint: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if status == httpx.codes.OK:
        try:
            data = response.json()
        except ValueError:
            raise ApiError("the response is not JSON", endpoint=endpoint, status=status) from None
        if not isinstance(data, dict):
            raise ApiError("the response is not a JSON object", endpoint=endpoint, status=status)
        return data
    code, message = _error_body(response)
    if status == httpx.codes.TOO_MANY_REQUESTS:
        retry_after = _retry_after(response)
        error = RateLimited(message, endpoint=endpoint, retry_after=retry_after, error_code=code)
        raise _Retry(error, retry_after=retry_after)
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        raise _Retry(ServerError(message, endpoint=endpoint, status=status, error_code=code), ambiguous=True)
    kind = {400: BadRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound}.get(status, ApiError)
    if kind is Unauthorized:
        message += " (check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY)"
    raise kind(message, endpoint=endpoint, status=status, error_code=code)


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None, _cut(response.reason_phrase or "no error description")
    parts = list(dict.fromkeys(str(body[k]) for k in ("errorDescription", "errorMessage") if body.get(k)))
    code = body.get("errorCode")
    return (str(code) if code else None), _cut(
        ": ".join(parts) or response.reason_phrase or "no error description"
    )


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _describe_transport(exc: httpx.TransportError) -> str:
    kinds = {
        httpx.ConnectError: "could not connect",
        httpx.TimeoutException: "timed out",
        httpx.RemoteProtocolError: "the connection was dropped",
    }
    reason = next((text for cls, text in kinds.items() if isinstance(exc, cls)), "transport failure")
    return f"{reason} ({type(exc).__name__})"


def _secret(data: Mapping[str, Any], endpoint: str) -> Secret:
    cleartext = data.get("cleartext")
    if not isinstance(cleartext, str) or not cleartext:
        raise ApiError("the response has no secret", endpoint=endpoint)
    return Secret(cleartext)


def _final(error: ApiError | None, endpoint: str) -> ApiError:
    return error or ApiUnavailable("gave up after repeated unknown outcomes", endpoint=endpoint)
