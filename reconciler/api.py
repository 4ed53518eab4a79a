"""The Descope Management API client for MCP servers and their clients: the only module that imports httpx.

One async method per call; each takes its method and path from the kind's
:class:`~reconciler.kinds.Endpoint` (a GET sends query parameters, a POST a JSON body), joined to the
base URL, which may carry a path of its own (a proxy's ``https://proxy.example/descope``). Every call
goes through the run's shared :class:`Throttle`. Errors are translated here into the
``reconciler.errors`` tree (method and path, status, errorCode, a cut-short message; never the key or
a secret). Retries: a 429 always (it is answered before the mutation runs); 5xx and transport
failures only for calls that are safe to repeat. A create or rotate whose outcome is unknown is never
blindly repeated: the client looks first, so a retry cannot make a duplicate or rotate twice.

The answer may come from a broken proxy or an attacker at DESCOPE_BASE_URL, so what one can cost is
bounded (the constants below): each request has a deadline for the whole exchange, bodies are read
as a stream up to a size cap, a search fans out to a capped number of pages that must add up, and a
Retry-After has a ceiling. Every text taken from an answer (data, error bodies, reason phrases,
headers, the libraries' log lines) has the management key replaced with ``***`` before anyone sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import idna

from reconciler import assumptions, kinds
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
from reconciler.kinds import Endpoint, LiveObject
from reconciler.resource_wire import one_resource_from_wire, resource_to_wire, resources_from_wire
from reconciler.scopes import ScopesFormat
from reconciler.secret import Secret
from reconciler.textsafe import visible
from reconciler.throttle import Throttle
from reconciler.wire import (
    LiveClient,
    LiveServer,
    WireError,
    client_from_wire,
    clients_page,
    decode,
    optional_text,
    required_text,
    server_from_wire,
    server_to_wire,
    servers_from_wire,
)

log = logging.getLogger("reconciler.api")
T = TypeVar("T")
Found = TypeVar("Found", bound=LiveObject)

DEFAULT_BASE_URL = "https://api.descope.com"
REGIONAL_ID_LENGTH = 32
MESSAGE_LIMIT = 200
CODE_LIMIT = 40  # an errorCode is a short token (E130429); a longer one is cut
MIB = 1024 * 1024


def _present(endpoint: Endpoint | None, what: str) -> Endpoint:
    if endpoint is None:
        raise TypeError(f"the client kind has no {what} endpoint")
    return endpoint


SERVERS = kinds.SERVER.endpoints
CLIENTS = kinds.CLIENT.endpoints
RESOURCES = kinds.RESOURCE_ENDPOINTS
DELETE_SERVERS = _present(SERVERS.delete_many, "delete_many")
DELETE_CLIENTS = _present(CLIENTS.delete_many, "delete_many")
SEARCH = CLIENTS.list
READ_SECRET = _present(CLIENTS.read_secret, "read_secret")
ROTATE_SECRET = _present(CLIENTS.rotate_secret, "rotate_secret")

# ---- what one answer may cost ------------------------------------------------------------------
# servers/all is not paged: 1,000 servers of ~0.7 KB are 0.7 MB of JSON, and MAX_SERVERS rich ones
# (~3 KB) 30 MB. A longer body is cut off with an error, never held whole. (Decoded, a body of tiny
# values such as `[{},{},...]` can take ~20x its size in Python objects: still bounded.)
MAX_RESPONSE_BYTES = 32 * MIB
# An error body is read for its message only (cut to MESSAGE_LIMIT characters anyway).
MAX_ERROR_BODY_BYTES = 64 * 1024
# Descope's published back-off is 60 s (general traffic, after 100 requests / 60 s); twice that is
# still a plausible wait. A longer (or unreadable) Retry-After ends the call with RateLimited at
# once, naming the wait asked for, instead of a sleep of an hour, or of inf.
MAX_RETRY_AFTER = 120.0
DEFAULT_RETRY_AFTER = 1.0  # a 429 without Retry-After
# The configurable per-request deadline (MCP_RECONCILER_TIMEOUT); Descope's SDKs use 60 s.
MAX_TIMEOUT = 600.0
# servers/all fans out to one search per server: 10x the 1,000 servers of BENCHMARKS.md.
MAX_SERVERS = 10_000
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
# The key is replaced in text from answers only when at least this long: a shorter value would
# match ordinary text (Descope's keys are far longer; the test suite's canary guard uses 8 too).
MIN_REDACTED_LENGTH = 8
REDACTED = "***"
# Loggers of the HTTP libraries, whose -vvv debug lines show response headers and reason phrases.
LIBRARY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


async def gather_or_cancel(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``calls`` concurrently; on the first failure cancel the rest, so that a bad answer ends
    the whole fan-out at once instead of after every other call has run its course."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _check_base_url(url: httpx.URL) -> None:
    """What httpx takes but no connection can use: a port out of range, a host IDNA refuses."""
    problem = _base_url_problem(url)
    if problem:
        raise UsageError(f"the API base URL (DESCOPE_BASE_URL) cannot be used: {problem}")


def _base_url_problem(url: httpx.URL) -> str:
    try:
        host = url.host  # decodes IDNA labels, which can fail
        idna.encode(host, uts46=True)
    except (idna.IDNAError, UnicodeError):
        return "its host name is not valid"
    if url.scheme not in ("http", "https") or not host:
        return "it needs http:// or https:// and a host"
    if url.port is not None and not 0 < url.port < 65536:
        return f"port {url.port} is out of range"
    if url.query or url.fragment:  # each call's path is joined to the base's: a query would swallow it
        return "it may have a path but no query (?...) or fragment (#...)"
    return ""


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


class Redactor:
    """Replaces the management key (and the ``project:key`` bearer value) in text with ``***``."""

    def __init__(self, project_id: str, management_key: str) -> None:
        long_enough = len(management_key) >= MIN_REDACTED_LENGTH
        self._values = (f"{project_id}:{management_key}", management_key) if long_enough else ()

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def __repr__(self) -> str:
        return "Redactor(***)"


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record, with the key redacted from its message."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's to report
            return True
        clean = self._redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@dataclass(frozen=True)
class _Request:
    """One call as sent: its endpoint, the query parameters and, for a POST, the JSON body."""

    endpoint: Endpoint
    query: Mapping[str, str] | None
    body: Mapping[str, Any] | None

    @classmethod
    def of(
        cls, endpoint: Endpoint, body: Mapping[str, Any] | None, query: Mapping[str, str] | None
    ) -> _Request:
        if endpoint.method == "GET":
            if body is not None:
                raise TypeError(f"{endpoint} sends no body")
            return cls(endpoint, query, None)
        return cls(endpoint, query, {} if body is None else body)

    @property
    def relative_url(self) -> str:
        """The path relative to the base URL, whose own path (a proxy's prefix, say) it extends."""
        return self.endpoint.path.lstrip("/")


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, read whole (within its cap) and detached from the connection."""

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes


class _Budget:
    """Bytes that the answers of one search may still take, shared by its concurrent pages."""

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    def spend(self, count: int, endpoint: Endpoint) -> None:
        self.left -= count
        if self.left < 0:
            raise _unusable(
                endpoint, f"the answers take more than {self.limit / MIB:g} MiB in all; stopped reading them"
            )


class DescopeClient:
    """Async client of ``/v1/mgmt/mcp/*``. Use ``async with``; share one per run."""

    MAX_TIMEOUT = MAX_TIMEOUT

    def __init__(
        self,
        *,
        project_id: str,
        management_key: str,
        base_url: str = DEFAULT_BASE_URL,
        throttle: Throttle | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        scopes_format: ScopesFormat = "categorized",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        _check_credentials(project_id, management_key)
        if not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan
            raise UsageError(
                f"the API timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}"
            )
        self.project_id = project_id
        self.throttle = throttle or Throttle()
        self.retry = retry or RetryPolicy()
        self.scopes_format: ScopesFormat = scopes_format
        self.timeout = timeout  # the deadline of one whole request, body included
        self.settle_seconds = timeout  # how long a lost request may still take to land
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._redact = Redactor(project_id, management_key)
        self._log_filter = RedactingFilter(self._redact)
        try:
            self._http = httpx.AsyncClient(
                base_url=base_url.rstrip("/"),
                headers={"Authorization": f"Bearer {project_id}:{management_key}"},
                timeout=timeout,
                transport=transport,
                limits=httpx.Limits(max_connections=self.throttle.settings.concurrency),
            )
        except httpx.InvalidURL:
            raise UsageError("the API base URL (DESCOPE_BASE_URL) is not a valid URL") from None
        _check_base_url(self._http.base_url)
        for name in (*LIBRARY_LOGGERS, log.name):
            logging.getLogger(name).addFilter(self._log_filter)

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
        for name in (*LIBRARY_LOGGERS, log.name):
            logging.getLogger(name).removeFilter(self._log_filter)

    # ---- servers -------------------------------------------------------------------------------

    async def load_all_servers(self) -> list[LiveServer]:
        endpoint = SERVERS.list
        data = await self._call(endpoint, {}, idempotent=True)
        listed = data.get("servers")
        if isinstance(listed, list) and len(listed) > MAX_SERVERS:
            raise _unusable(
                endpoint,
                f"the answer lists {len(listed):,} servers, more than the {MAX_SERVERS:,} this tool reads "
                "in one project",
            )
        servers = _read(endpoint, servers_from_wire, data)
        seen = next((s.scopes_format for s in servers if s.scopes_format), None)
        if seen:
            self.scopes_format = seen  # write scopes in the shape this project's API uses
        return servers

    # ---- MCP servers on the Resources surface ----------------------------------------------------

    async def load_all_resources(self) -> list[LiveServer]:
        """The MCP servers made as Resources (``GET resources/load``; API Resources are left out)."""
        endpoint = RESOURCES.list
        data = await self._call(endpoint, None, idempotent=True)
        listed = data.get("resources")
        if isinstance(listed, list) and len(listed) > MAX_SERVERS:
            raise _unusable(
                endpoint,
                f"the answer lists {len(listed):,} resources, more than the {MAX_SERVERS:,} this tool reads "
                "in one project",
            )
        return _read(endpoint, resources_from_wire, data)

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
            return _the_one(endpoint, f"resources named {name!r}", await named())

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
            return _the_one(endpoint, f"servers named {name!r}", await named())

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
            made = _read(endpoint, lambda d: (required_text(d, "id"), optional_text(d, "clientId")), data)
            return CreatedClient(*made, _secret(data, endpoint))

        async def named() -> list[LiveClient]:
            return [c for c in await self.search_clients(server_id, name=name) if c.id not in exclude_ids]

        async def lookup() -> CreatedClient | None:
            found = _the_one(endpoint, f"clients named {name!r}", await named())
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
        raise _unusable(SEARCH, f"the pages of clients do not add up ({problem}) in {SEARCH_READS} reads")

    async def _read_clients(self, server_id: str, request: Mapping[str, Any]) -> tuple[list[LiveClient], str]:
        """One read of every page: the clients, or a description of why the pages do not add up."""
        budget = _Budget(MAX_SEARCH_BYTES)
        first, reported = await self._page(server_id, request, 0, budget)
        total = len(first) if reported is None else reported
        if total > MAX_CLIENTS_PER_SERVER:
            raise _unusable(
                SEARCH,
                f"the server reports {total:,} clients, more than the {MAX_CLIENTS_PER_SERVER:,} this tool "
                "reads for one server",
            )
        if total <= len(first) or not first:
            return _unique(first, total)
        size = len(first)  # the page size the server actually used
        count = math.ceil(total / size)
        if count > MAX_SEARCH_PAGES:
            raise _unusable(
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
        self, server_id: str, request: Mapping[str, Any], page: int, budget: _Budget
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

    # ---- calls that must take effect at most once ----------------------------------------------

    async def _at_most_once(
        self,
        endpoint: Endpoint,
        send: Callable[[], Awaitable[T]],
        lookup: Callable[[], Awaitable[T | None]],
        sweep: Callable[[T], Awaitable[T]] | None = None,
    ) -> T:
        """Make a call that is not safe to repeat (a create, a rotation) take effect once.

        ``send`` makes the call and reads its answer. When its outcome is unknown, ``lookup`` says
        what it did: its result (it took effect), None (it did not: the call is sent again after a
        back-off), or AmbiguousObject (it cannot tell). Once a call succeeds only after such a retry,
        a lost attempt may still land after it: ``sweep`` (given the retry's result, after a wait as
        long as a request may take) settles that and returns the result to hand over: the create's,
        its late duplicates deleted, or the secret that is current after a rotation."""
        last: ApiError | None = None
        for failures in range(1, self.retry.attempts + 1):
            try:
                made = await send()
            except _OutcomeUnknown as unknown:
                last = unknown.error
            else:
                if failures == 1 or sweep is None:
                    return made
                await self._sleep(self.settle_seconds)
                return await sweep(made)
            found = await lookup()
            if found is not None:
                return found
            await self._sleep(self.retry.delay(failures, self._rng))
        raise last or ApiUnavailable("gave up after repeated unknown outcomes", endpoint=endpoint)

    async def _delete_late(
        self,
        endpoint: Endpoint,
        name: str,
        found: Sequence[LiveObject],
        keep: str,
        delete: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        """Delete what lost creates of ``name`` made (``found`` but ``keep``): nobody holds those
        objects' secrets, and they carry our name."""
        extra = [obj.id for obj in found if obj.id != keep]
        if extra:
            log.warning("%s: deleting %d late duplicate(s) of %r: %s", endpoint, len(extra), name, extra)
            await delete(extra)

    # ---- transport -----------------------------------------------------------------------------

    async def _ask(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any] | None,
        read: Callable[[dict[str, Any]], T],
        *,
        query: Mapping[str, str] | None = None,
        idempotent: bool = True,
        budget: _Budget | None = None,
    ) -> T:
        """Call, then ``read`` the answer (a WireError is an ApiError of ``endpoint``)."""
        data = await self._call(endpoint, body, query=query, idempotent=idempotent, budget=budget)
        return _read(endpoint, read, data)

    async def _call(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, str] | None = None,
        idempotent: bool,
        budget: _Budget | None = None,
    ) -> dict[str, Any]:
        """Send ``endpoint`` (a GET with ``query`` and no body; a POST with the JSON ``body``, ``{}``
        when None) with retries: 429 always, other failures only when ``idempotent`` or surely unsent."""
        request = _Request.of(endpoint, body, query)
        failures = limited = 0
        while True:
            try:
                return await self._attempt(request, budget)
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

    async def _attempt(self, request: _Request, budget: _Budget | None) -> dict[str, Any]:
        endpoint = request.endpoint
        async with self.throttle.slot():
            started = time.monotonic()

            def outcome(result: str | int) -> None:
                elapsed = (time.monotonic() - started) * 1000
                log.debug("%s %s -> %s (%.0f ms)", endpoint.method, endpoint.path, result, elapsed)

            try:
                # One deadline for the whole exchange: a server that drips a byte a second never
                # trips httpx's per-read timeout, but it cannot hold a request past this.
                async with asyncio.timeout(self.timeout):
                    answer = await self._exchange(request, budget)
            except TimeoutError:
                outcome("deadline")
                reason = f"timed out: no whole answer within {self.timeout:g} s"
                raise _Retry(ApiUnavailable(reason, endpoint=endpoint), ambiguous=True) from None
            except httpx.RequestError as exc:
                outcome(type(exc).__name__)
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                error = ApiUnavailable(_describe_transport(exc), endpoint=endpoint)
                raise _Retry(error, ambiguous=not unsent) from None
            outcome(answer.status)
        return self._interpret(endpoint, answer)

    async def _exchange(self, request: _Request, budget: _Budget | None) -> _Answer:
        """Send, and read the answer as a stream: a 200 up to MAX_RESPONSE_BYTES (more is an error),
        any other status up to MAX_ERROR_BODY_BYTES (the rest is not read)."""
        endpoint = request.endpoint
        sending = self._http.stream(
            endpoint.method, request.relative_url, params=request.query, json=request.body
        )
        async with sending as response:
            whole = response.status_code == httpx.codes.OK
            limit = MAX_RESPONSE_BYTES if whole else MAX_ERROR_BODY_BYTES
            if whole and _declared_length(response.headers) > limit:
                raise _too_large(endpoint)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():  # decoded: a gzip bomb counts at full size
                if budget is not None:
                    budget.spend(len(chunk), endpoint)
                size += len(chunk)
                if size > limit:
                    if whole:
                        raise _too_large(endpoint)
                    chunks.append(chunk[: len(chunk) - (size - limit)])
                    break
                chunks.append(chunk)
            return _Answer(response.status_code, response.reason_phrase, response.headers, b"".join(chunks))

    def _interpret(self, endpoint: Endpoint, answer: _Answer) -> dict[str, Any]:
        status = answer.status
        if status == httpx.codes.OK:
            try:
                return decode(answer.body, self._redact)
            except WireError as exc:
                raise _unusable(endpoint, str(exc)) from None
        code, message = self._error_body(answer)
        if status == httpx.codes.TOO_MANY_REQUESTS:
            retry_after = self._retry_after(answer, endpoint, code, message)
            error = RateLimited(message, endpoint=endpoint, retry_after=retry_after, error_code=code)
            raise _Retry(error, retry_after=retry_after)
        if status >= httpx.codes.INTERNAL_SERVER_ERROR:
            failed = ServerError(message, endpoint=endpoint, status=status, error_code=code)
            raise _Retry(failed, ambiguous=True)
        kind = {400: BadRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound}.get(status, ApiError)
        if kind is Unauthorized:
            message += " (check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY)"
        raise kind(message, endpoint=endpoint, status=status, error_code=code)

    def _error_body(self, answer: _Answer) -> tuple[str | None, str]:
        """The errorCode and a one-line, cut-short, redacted message of an error answer."""
        fallback = answer.reason or "no error description"
        try:
            body = json.loads(answer.body)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return None, self._say(fallback)
        texts = (body.get(k) for k in ("errorDescription", "errorMessage"))
        parts = list(dict.fromkeys(str(t) for t in texts if isinstance(t, str | int) and t))
        code = body.get("errorCode")
        shown = self._say(str(code), CODE_LIMIT) if isinstance(code, str | int) and code else None
        return shown, self._say(": ".join(parts) or fallback)

    def _retry_after(self, answer: _Answer, endpoint: Endpoint, code: str | None, message: str) -> float:
        """The wait a 429 asks for: whole or decimal seconds up to MAX_RETRY_AFTER; anything else
        (more, inf, nan, negative, a date, text) ends the call at once, naming what was asked."""
        raw = answer.headers.get("Retry-After")
        if raw is None:
            return DEFAULT_RETRY_AFTER
        text = raw.strip()
        shown = self._say(text, CODE_LIMIT)
        if not _SECONDS.fullmatch(text):
            raise RateLimited(
                f"{message}; its Retry-After {shown!r} is not a number of seconds, so the wait is "
                "unknown: try again later",
                endpoint=endpoint,
                retry_after=math.nan,
                error_code=code,
            )
        seconds = float(text)
        if seconds > MAX_RETRY_AFTER:
            raise RateLimited(
                f"{message}; it asked to wait {shown} s (Retry-After), more than the {MAX_RETRY_AFTER:g} s "
                "this tool waits: try again later",
                endpoint=endpoint,
                retry_after=seconds,
                error_code=code,
            )
        return seconds

    def _say(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        """Text from an answer as it may appear in a message: redacted, then one line, then cut."""
        return _cut(self._redact(text), limit)


_SECONDS = re.compile(r"\d+(\.\d+)?")


def _read(endpoint: Endpoint, read: Callable[[dict[str, Any]], T], data: dict[str, Any]) -> T:
    """``read(data)``; an answer of the wrong shape is an ApiError of ``endpoint``."""
    try:
        return read(data)
    except WireError as exc:
        raise _unusable(endpoint, str(exc)) from None


def _unusable(endpoint: Endpoint, message: str) -> ApiError:
    """An answer that came (200) but cannot be used: the wrong shape, too large, too many."""
    return ApiError(message, endpoint=endpoint, status=httpx.codes.OK)


def _the_one(endpoint: Endpoint, what: str, found: Sequence[Found]) -> Found | None:
    """What a create whose outcome was unknown made, among the ``found`` objects that it may have made:
    the one, None when there is none, and AmbiguousObject when there are several."""
    if len(found) > 1:
        ids = ", ".join(obj.id for obj in found)
        raise AmbiguousObject(f"several new {what}: {ids}", endpoint=endpoint)
    if not found:
        return None
    log.info("%s: outcome was unknown; found the one it made: %s", endpoint, found[0].id)
    return found[0]


def _unique(clients: list[LiveClient], total: int) -> tuple[list[LiveClient], str]:
    """The clients when they are ``total`` different ones, else why not."""
    if len({c.id for c in clients}) != len(clients):
        return [], "a client was listed twice"
    if len(clients) != total:
        return [], f"{len(clients)} clients were listed of a total of {total}"
    return clients, ""


def _wire_or_refuse(endpoint: Endpoint, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A server's fields as a Resource body, or a clean error when it cannot be one."""
    try:
        return resource_to_wire(fields)
    except WireError as exc:
        raise BadRequest(f"not sent: {exc}", endpoint=endpoint) from None


def _check_credentials(project_id: str, management_key: str) -> None:
    """Refuse what httpx could not send as a header, without ever showing the key."""
    if not project_id or not management_key:
        raise UsageError("a project ID and a management key are both required")
    if not _header_safe(management_key):
        raise UsageError(
            "the management key (DESCOPE_MANAGEMENT_KEY) must be ASCII, with no line breaks, control "
            "characters or surrounding spaces; this one has other characters (copy it again from the "
            "Descope console)"
        )
    if not _header_safe(project_id):
        raise UsageError("the project ID must be printable ASCII with no surrounding spaces")


def _header_safe(text: str) -> bool:
    return text.isascii() and text.isprintable() and text == text.strip()


def _declared_length(headers: httpx.Headers) -> int:
    try:
        return int(headers.get("Content-Length", "0"))
    except ValueError:
        return 0


def _too_large(endpoint: Endpoint) -> ApiError:
    return _unusable(
        endpoint,
        f"the response is larger than {MAX_RESPONSE_BYTES // MIB} MiB; stopped reading it "
        "(is DESCOPE_BASE_URL the Descope API?)",
    )


def _cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line (control characters escaped, so an answer cannot forge a line or a terminal code), cut."""
    text = visible(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_transport(exc: httpx.RequestError) -> str:
    reasons = {
        httpx.ConnectError: "could not connect",
        httpx.TimeoutException: "timed out",
        httpx.RemoteProtocolError: "the connection was dropped, or the answer was not valid HTTP",
        httpx.DecodingError: "the answer could not be decoded",
    }
    reason = next((text for cls, text in reasons.items() if isinstance(exc, cls)), "transport failure")
    return f"{reason} ({type(exc).__name__})"


def _secret(data: Mapping[str, Any], endpoint: Endpoint) -> Secret:
    cleartext = data.get("cleartext")
    if not isinstance(cleartext, str) or not cleartext:
        raise ApiError("the response has no secret", endpoint=endpoint)
    return Secret(cleartext)
