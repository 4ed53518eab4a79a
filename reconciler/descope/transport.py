"""The transport both surfaces of Descope's Management API share: the client's only module with httpx.

Each call names its :class:`~reconciler.descope.endpoints.Endpoint` (a GET sends query parameters, a
POST a JSON body), whose path is joined to the base URL, which may carry a path of its own (a proxy's
``https://proxy.example/descope``). Every call goes through the run's shared :class:`Throttle`. Errors
are translated here into the ``reconciler.errors`` tree (method and path, status, errorCode, a
cut-short message; never the key or a secret). Retries: a 429 always (it is answered before the
mutation runs); 5xx and transport failures only for calls that are safe to repeat. A create or rotate
whose outcome is unknown is never blindly repeated: :meth:`Transport._at_most_once` looks first, so a
retry cannot make a duplicate or rotate twice.

The answer may come from a broken proxy or an attacker at DESCOPE_BASE_URL, so what one can cost is
bounded (the constants below, and a search's in ``reconciler.descope.mcp_servers``): each request has
a deadline for the whole exchange, bodies are read as a stream up to a size cap, a search fans out to
a capped number of pages that must add up, and a Retry-After has a ceiling. Every text taken from an
answer (data, error bodies, reason phrases, headers, the libraries' log lines) has the management key
replaced with ``***`` before anyone sees it.

Messages name where and what: a failure without an answer (no connection, a TLS certificate refused,
a deadline, a dropped connection) names the host and port called, the cause in plain words and how many
attempts were made (``POST /v1/mgmt/mcp/servers/all failed: could not connect to api.descope.com:443:
connection refused, after 6 attempts in 9.8 s``); never a header, so never the key. Waits are said at
the default verbosity on the ``reconciler.wait`` logger (see ``reconciler.throttle``): a back-off or a
settling wait of ``NOTICE_SECONDS`` or more when it starts, and a request still unanswered after
``STILL_WAITING_AFTER`` seconds every ``STILL_WAITING_EVERY`` seconds until it ends (one line for all the
calls waiting at once, not one per call).

The calls themselves are methods of the classes built on :class:`Transport`, one module per surface
(``mcp_servers``, ``resources``), joined in ``reconciler.descope.client.DescopeClient``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import random
import re
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpx
import idna

from reconciler.descope.endpoints import Endpoint
from reconciler.descope.wire import WireError, decode
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
from reconciler.kinds import LiveObject
from reconciler.scopes import ScopesFormat
from reconciler.textsafe import visible
from reconciler.throttle import NOTICE_SECONDS, Throttle, seconds_text, wait_log

# httpcore asks which async library runs by importing sniffio inside the call, several times per
# request (its locks, events and cancellation shields). sniffio is optional (anyio no longer needs
# it); when it is not installed each of those imports searched sys.path again and failed, a fifth
# of a millisecond each: a third of the client's CPU time per request. A None in sys.modules is the
# import system's own "not importable", answered at once; without sniffio, httpcore and anyio take
# asyncio, which is what runs here. Installed, sniffio is left alone.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

# The one logger of every call on either surface. Its name is the one it had when the client was the
# module reconciler.api: -vv output shows it, and log filters may select it.
log = logging.getLogger("reconciler.api")
T = TypeVar("T")
Found = TypeVar("Found", bound=LiveObject)

DEFAULT_BASE_URL = "https://api.descope.com"
REGIONAL_ID_LENGTH = 32
MESSAGE_LIMIT = 200
CODE_LIMIT = 40  # an errorCode is a short token (E130429); a longer one is cut
MIB = 1024 * 1024

# ---- what one answer may cost ------------------------------------------------------------------
# (and what a search of clients may cost in all: reconciler.descope.mcp_servers)
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
# servers/all (and resources/load) fans out to one search per server: 10x the 1,000 servers of
# BENCHMARKS.md.
MAX_SERVERS = 10_000
# The key is replaced in text from answers only when at least this long: a shorter value would
# match ordinary text (Descope's keys are far longer; the test suite's canary guard uses 8 too).
MIN_REDACTED_LENGTH = 8
REDACTED = "***"
# A request unanswered this long is said to be waiting (at the default verbosity), then again every
# STILL_WAITING_EVERY seconds until it is answered or its deadline ends it.
STILL_WAITING_AFTER = 5.0
STILL_WAITING_EVERY = 10.0
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


class SlowCalls:
    """Says, at the default verbosity, which calls wait long for an answer: a call unanswered after
    ``after`` seconds, then again every ``every`` seconds until it ends. One line speaks for every
    call waiting at once (eight hung calls make one line per ``every`` seconds, not eight)."""

    def __init__(self, where: str, *, timeout: float, after: float, every: float) -> None:
        self.where = where
        self.timeout = timeout
        self.after = after
        self.every = every
        self._sent: dict[int, float] = {}  # call number -> when it was sent (the event loop's clock)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._count = 0
        self._last_said = -math.inf

    @contextmanager
    def watching(self, endpoint: Endpoint) -> Iterator[None]:
        """Watch one call for as long as the ``with`` block runs (a timer, no task: cheap per call)."""
        if self.after >= self.timeout:  # the deadline ends the call before it would be said
            yield
            return
        loop = asyncio.get_running_loop()
        self._count += 1
        number = self._count
        self._sent[number] = loop.time()
        self._timers[number] = loop.call_later(self.after, self._say, loop, number, endpoint)
        try:
            yield
        finally:
            del self._sent[number]
            self._timers.pop(number).cancel()

    def _say(self, loop: asyncio.AbstractEventLoop, number: int, endpoint: Endpoint) -> None:
        now, sent = loop.time(), self._sent[number]
        self._timers[number] = loop.call_later(self.every, self._say, loop, number, endpoint)
        if self._last_said >= sent and now - self._last_said < self.every * 0.9:
            return  # a line about another call said lately that this one was waiting too
        self._last_said = now
        others = len(self._sent) - 1  # the other calls in flight, all of them waiting for an answer
        also = f"; {others} more call{'s' if others != 1 else ''} waiting too" if others else ""
        wait_log.info(
            "still waiting for %s to %s (%s of the %g s timeout, MCP_RECONCILER_TIMEOUT)%s",
            endpoint,
            self.where,
            seconds_text(now - sent),
            self.timeout,
            also,
        )


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


class Budget:
    """Bytes that the answers of one search may still take, shared by its concurrent pages."""

    def __init__(self, limit: int) -> None:
        self.limit = self.left = limit

    def spend(self, count: int, endpoint: Endpoint) -> None:
        self.left -= count
        if self.left < 0:
            raise unusable(
                endpoint, f"the answers take more than {self.limit / MIB:g} MiB in all; stopped reading them"
            )


class Transport:
    """What every call shares, whatever its surface: the credentials and the connection, the throttle,
    retries and deadlines, the bounds of an answer, redaction, and calls that must take effect at most
    once. Its subclasses add the calls; use ``async with``; share one per run."""

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
        notice_after: float | None = None,
        still_waiting_after: float | None = None,
        still_waiting_every: float | None = None,
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
        self.where = where_of(self._http.base_url)  # host:port, as messages name it
        # Waits this long or longer are said when they start (the module-level defaults are read
        # here, so a test may lower them).
        self.notice_after = NOTICE_SECONDS if notice_after is None else notice_after
        self._slow = SlowCalls(
            self.where,
            timeout=timeout,
            after=STILL_WAITING_AFTER if still_waiting_after is None else still_waiting_after,
            every=STILL_WAITING_EVERY if still_waiting_every is None else still_waiting_every,
        )
        for name in (*LIBRARY_LOGGERS, log.name):
            logging.getLogger(name).addFilter(self._log_filter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, project_id: str | None = None, **options: Any) -> Self:
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        for name in (*LIBRARY_LOGGERS, log.name):
            logging.getLogger(name).removeFilter(self._log_filter)

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
        started = time.monotonic()
        for failures in range(1, self.retry.attempts + 1):
            try:
                made = await send()
            except _OutcomeUnknown as unknown:
                last = unknown.error
            else:
                if failures == 1 or sweep is None:
                    return made
                await self._wait(
                    self.settle_seconds,
                    f"before checking that no earlier attempt of {endpoint}, whose answer was lost, "
                    "landed late (it would be a duplicate)",
                )
                return await sweep(made)
            found = await lookup()
            if found is not None:
                return found
            await self._back_off(endpoint, failures, last, started)
        if last is None:
            raise ApiUnavailable("gave up after repeated unknown outcomes", endpoint=endpoint)
        raise _gave_up(last, self.retry.attempts, started)

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
        budget: Budget | None = None,
    ) -> T:
        """Call, then ``read`` the answer (a WireError is an ApiError of ``endpoint``)."""
        data = await self._call(endpoint, body, query=query, idempotent=idempotent, budget=budget)
        return read_answer(endpoint, read, data)

    async def _call(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, str] | None = None,
        idempotent: bool,
        budget: Budget | None = None,
    ) -> dict[str, Any]:
        """Send ``endpoint`` (a GET with ``query`` and no body; a POST with the JSON ``body``, ``{}``
        when None) with retries: 429 always, other failures only when ``idempotent`` or surely unsent."""
        request = _Request.of(endpoint, body, query)
        failures = limited = 0
        started = time.monotonic()
        while True:
            try:
                return await self._attempt(request, budget)
            except _Retry as retry:
                if retry.retry_after is not None:
                    limited += 1
                    if limited > self.retry.rate_limited_attempts:
                        raise retry.error from None
                    asked = f"{self.where} answered {endpoint} with 429 (rate limited), Retry-After"
                    self.throttle.pause(retry.retry_after, f"{asked} {retry.retry_after:g} s")
                    continue
                if retry.ambiguous and not idempotent:
                    raise _OutcomeUnknown(retry.error) from None
                failures += 1
                if failures >= self.retry.attempts:
                    raise _gave_up(retry.error, failures + limited, started) from None
                await self._back_off(endpoint, failures, retry.error, started)

    async def _back_off(
        self, endpoint: Endpoint, failures: int, error: ApiError | None, started: float
    ) -> None:
        """Wait before attempt ``failures + 1``; said once the call has been failing for a while."""
        delay = self.retry.delay(failures, self._rng)
        if time.monotonic() - started + delay >= self.notice_after:
            why = str(error).removeprefix(f"{endpoint} failed: ") if error else "outcome unknown"
            attempt = f"attempt {failures + 1} of {self.retry.attempts}"
            wait_log.info("retrying %s in %s, %s (%s)", endpoint, seconds_text(delay), attempt, why)
        await self._sleep(delay)

    async def _wait(self, seconds: float, why: str) -> None:
        """Sleep, saying so first when the wait is long."""
        if seconds >= self.notice_after:
            wait_log.info("waiting %s %s", seconds_text(seconds), why)
        await self._sleep(seconds)

    async def _attempt(self, request: _Request, budget: Budget | None) -> dict[str, Any]:
        endpoint = request.endpoint
        async with self.throttle.slot():
            started = time.monotonic()

            def outcome(result: str | int) -> None:
                elapsed = (time.monotonic() - started) * 1000
                log.debug("%s %s -> %s (%.0f ms)", endpoint.method, endpoint.path, result, elapsed)

            try:
                # One deadline for the whole exchange: a server that drips a byte a second never
                # trips httpx's per-read timeout, but it cannot hold a request past this.
                with self._slow.watching(endpoint):
                    async with asyncio.timeout(self.timeout):
                        answer = await self._exchange(request, budget)
            except TimeoutError:
                outcome("deadline")
                reason = f"timed out: no whole answer within {self.timeout:g} s from {self.where}"
                raise _Retry(ApiUnavailable(reason, endpoint=endpoint), ambiguous=True) from None
            except httpx.RequestError as exc:
                outcome(type(exc).__name__)
                error = ApiUnavailable(self._describe(exc), endpoint=endpoint)
                if _certificate_refused(exc):
                    raise error from None  # another attempt gets the same certificate
                unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                raise _Retry(error, ambiguous=not unsent) from None
            outcome(answer.status)
        return self._interpret(endpoint, answer)

    async def _exchange(self, request: _Request, budget: Budget | None) -> _Answer:
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
                raise unusable(endpoint, str(exc)) from None
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
            message += (
                f" (check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY; the answer came from {self.where})"
            )
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

    def _describe(self, exc: httpx.RequestError) -> str:
        """A failure without an answer, for people: where it happened and why, in plain words."""
        where, timeout, kind = self.where, self.timeout, type(exc).__name__
        cause = _root_cause(exc)
        plain = _connect_cause(cause) or self._say(str(cause) or type(cause).__name__, CAUSE_LIMIT)
        said: list[tuple[type[httpx.RequestError], str]] = [
            (httpx.ConnectTimeout, f"could not connect to {where}: no connection within {timeout:g} s"),
            (httpx.ConnectError, f"could not connect to {where}: {plain}"),
            (httpx.PoolTimeout, f"timed out: no free connection to {where} within {timeout:g} s"),
            (httpx.TimeoutException, f"timed out waiting for {where} ({kind})"),
            (
                httpx.RemoteProtocolError,
                f"the connection was dropped, or the answer was not valid HTTP ({where}: {plain})",
            ),
            (httpx.DecodingError, f"the answer could not be decoded ({where}: {plain})"),
            (httpx.NetworkError, f"the connection to {where} failed: {plain}"),
        ]
        fallback = f"transport failure talking to {where} ({kind}: {plain})"
        return next((text for cls, text in said if isinstance(exc, cls)), fallback)


_SECONDS = re.compile(r"\d+(\.\d+)?")


def read_answer(endpoint: Endpoint, read: Callable[[dict[str, Any]], T], data: dict[str, Any]) -> T:
    """``read(data)``; an answer of the wrong shape is an ApiError of ``endpoint``."""
    try:
        return read(data)
    except WireError as exc:
        raise unusable(endpoint, str(exc)) from None


def unusable(endpoint: Endpoint, message: str) -> ApiError:
    """An answer that came (200) but cannot be used: the wrong shape, too large, too many."""
    return ApiError(message, endpoint=endpoint, status=httpx.codes.OK)


def the_one(endpoint: Endpoint, what: str, found: Sequence[Found]) -> Found | None:
    """What a create whose outcome was unknown made, among the ``found`` objects that it may have made:
    the one, None when there is none, and AmbiguousObject when there are several."""
    if len(found) > 1:
        ids = ", ".join(obj.id for obj in found)
        raise AmbiguousObject(f"several new {what}: {ids}", endpoint=endpoint)
    if not found:
        return None
    log.info("%s: outcome was unknown; found the one it made: %s", endpoint, found[0].id)
    return found[0]


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
    return unusable(
        endpoint,
        f"the response is larger than {MAX_RESPONSE_BYTES // MIB} MiB; stopped reading it "
        "(is DESCOPE_BASE_URL the Descope API?)",
    )


def _cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line (control characters escaped, so an answer cannot forge a line or a terminal code), cut."""
    text = visible(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


CAUSE_LIMIT = 120  # a library's words about a failure, as a message quotes them


def where_of(url: httpx.URL) -> str:
    """``host:port`` of a base URL (its path too, when it has one): where calls go, as messages name
    it; never the URL's user name or password."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{host}:{port}{url.path.rstrip('/')}"


def _gave_up(error: ApiError, attempts: int, started: float) -> ApiError:
    """``error`` saying how many attempts were made, when there was no answer to name (a failure
    with an answer names its status; its message stays as the server gave it)."""
    if attempts < 2 or type(error) is not ApiUnavailable:
        return error
    message = str(error).removeprefix(f"{error.endpoint} failed: ")
    spent = seconds_text(time.monotonic() - started)
    return ApiUnavailable(f"{message}, after {attempts} attempts in {spent}", endpoint=error.endpoint)


def _root_cause(exc: BaseException) -> BaseException:
    """The deepest error under ``exc`` (httpx wraps httpcore's, which wraps the socket's)."""
    seen = {id(exc)}
    deepest = exc
    while True:
        below = deepest.__cause__ or deepest.__context__
        if below is None or id(below) in seen:
            return deepest
        seen.add(id(below))
        deepest = below


def _certificate_refused(exc: httpx.RequestError) -> bool:
    return isinstance(exc, httpx.ConnectError) and isinstance(_root_cause(exc), ssl.SSLCertVerificationError)


def _connect_cause(cause: BaseException) -> str:
    """Why a connection failed, in plain words; empty when the library's words are all there is."""
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or "not trusted"
        return f"its TLS certificate was refused ({why}); is DESCOPE_BASE_URL the right host?"
    if isinstance(cause, ssl.SSLError):
        why = getattr(cause, "reason", None) or type(cause).__name__
        return f"the TLS handshake failed ({why}); is it an HTTPS server?"
    plain = next((text for cls, text in _PLAIN_CAUSES if isinstance(cause, cls)), "")
    if not plain and isinstance(cause, OSError) and cause.strerror:  # "Network is unreachable"...
        plain = cause.strerror[0].lower() + cause.strerror[1:]
    return plain


_PLAIN_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (socket.gaierror, "its host name could not be resolved (check DESCOPE_BASE_URL and the network's DNS)"),
    (ConnectionRefusedError, "connection refused (is anything listening there?)"),
    (ConnectionResetError, "the connection was reset"),
    (TimeoutError, "the connection attempt timed out"),
)
