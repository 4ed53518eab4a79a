"""Read the live project in a forked process while this one loads the manifests (plan and drift).

Loading a large tree of manifests and reading the live project each take seconds, and neither needs
the other until the plan is made: both are CPU-bound Python, so threads would take turns, while a
second process runs beside this one. The fetch starts as soon as the Project's ``projectId`` is
known (its file is read first), and its result comes back through a pipe that only the two processes
hold, as plain data (``marshal``: dicts, lists and strings, never code) that is turned back into a
:class:`LiveState` here.

It is only ever a head start: the parent uses the result when the manifests, fully loaded, name the
same project, and otherwise reads the project itself as it always did. An API error the child met is
raised here whole (same type, same message); anything else that goes wrong in the child (it died,
crashed or was interrupted) also falls back to reading in this process. ``MCP_RECONCILER_PREFETCH=off``
turns it off; it is only used where ``fork`` is safe (Linux, a process of one thread) and where the
child's messages reach the user (stderr is a real file: not under a test runner that captures it in
memory).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import marshal
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.errors import ReconcilerError

PREFETCH_VARIABLE = "MCP_RECONCILER_PREFETCH"
_FORMAT = 1  # of what the child sends; both ends are this very file, but a stray reader is refused
log = logging.getLogger(__name__)


def allowed(environ: Mapping[str, str]) -> bool:
    """Whether this run may fork a reader: Linux, one thread, stderr a real file, not turned off."""
    if environ.get(PREFETCH_VARIABLE, "").strip().lower() in ("off", "0", "false", "no"):
        return False
    if not sys.platform.startswith("linux"):  # macOS frameworks are not fork-safe; Windows has none
        return False
    if threading.active_count() > 1:  # a fork copies one thread: locks others hold stay held
        return False
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return True


class Prefetch:
    """A fetch started early in a child process, at most once; :meth:`take` collects it."""

    def __init__(self, fetch: Callable[[str], LiveState]) -> None:
        self._fetch = fetch
        self._project_id: str | None = None
        self._pid: int | None = None
        self._reader: int | None = None

    def start(self, project_id: str) -> None:
        """Start reading ``project_id`` in a child process (a second call is ignored)."""
        if self._pid is not None or self._project_id is not None:
            return
        self._project_id = project_id
        try:
            reader, writer = os.pipe()
        except OSError:
            return
        sys.stderr.flush()  # what the parent has said so far is not said twice by the child
        gc.freeze()  # what both hold stays shared: no collection in either writes to its pages
        try:
            pid = os.fork()
        except OSError as exc:  # no process to spare: read in this one later
            log.debug("prefetch: cannot fork (%s)", exc)
            os.close(reader)
            os.close(writer)
            return
        if pid == 0:  # the child: read, send, and leave without running the parent's exit handlers
            os.close(reader)
            _child(self._fetch, project_id, writer)
        os.close(writer)
        self._pid, self._reader = pid, reader
        log.info("reading the live project in process %d while the manifests load", pid)

    def take(self, project_id: str) -> LiveState | None:
        """The live state the child read, when it read ``project_id``; None to read it here instead.
        An API error the child met is raised, as it would have been raised here."""
        if self._pid is None or self._reader is None:
            return None
        if project_id != self._project_id:
            log.info("the project read ahead is not the manifests' project: reading it here")
            self.cancel()
            return None
        pid = self._pid
        try:
            with os.fdopen(self._reader, "rb") as stream:
                self._reader = None
                data = stream.read()
        finally:
            self._reap()
        live = _answer(data)
        if live is None:
            log.info("process %d did not finish reading the live project: reading it here", pid)
        else:
            log.info("using the live project read by process %d", pid)
        return live

    def cancel(self) -> None:
        """Stop the child (the manifests were not usable, or the run ends): it only ever reads."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None


@contextlib.contextmanager
def prefetching(fetch: Callable[[str], LiveState], environ: Mapping[str, str]) -> Iterator[Prefetch | None]:
    """A :class:`Prefetch` for this run when one is allowed, never left running after the block."""
    if not allowed(environ):
        yield None
        return
    early = Prefetch(fetch)
    try:
        yield early
    finally:
        early.cancel()


def _child(fetch: Callable[[str], LiveState], project_id: str, writer: int) -> None:
    code = 0
    try:
        try:
            message: tuple[Any, ...] = ("live", _plain(fetch(project_id)))
        except ReconcilerError as exc:  # the API's answer, or a setting: the parent says it
            message = ("error", pickle.dumps(exc))
        payload = marshal.dumps((_FORMAT, *message))
        with os.fdopen(writer, "wb") as stream:
            stream.write(payload)
    except BaseException:  # a bug or an interrupt: the parent reads the project itself
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _answer(data: bytes) -> LiveState | None:
    try:
        message = marshal.loads(data)  # noqa: S302 - from our own child, through our own pipe
    except (EOFError, ValueError, TypeError):  # the child died or was interrupted before it said
        return None
    if not isinstance(message, tuple) or len(message) != 3 or message[0] != _FORMAT:
        return None
    kind, body = message[1], message[2]
    if kind == "error":
        error = pickle.loads(body)  # noqa: S301 - written by our own child, through our own pipe
        raise error
    return _rebuilt(body)


def _plain(live: LiveState) -> tuple[Any, ...]:
    """``live`` as marshal-able data: tuples, dicts, lists, strings and numbers."""
    servers = [(s.id, s.name, dict(s.fields), s.scopes_format, s.surface) for s in live.servers]
    clients = {
        server_id: [(c.id, c.client_id, c.server_id, c.name, dict(c.fields)) for c in items]
        for server_id, items in live.clients.items()
    }
    return servers, clients, live.scopes_format, live.complete


def _rebuilt(data: tuple[Any, ...]) -> LiveState:
    servers, clients, scopes_format, complete = data
    return LiveState(
        tuple(
            LiveServer(id=i, name=n, fields=MappingProxyType(f), scopes_format=shape, surface=surface)
            for i, n, f, shape, surface in servers
        ),
        MappingProxyType(
            {
                server_id: tuple(
                    LiveClient(id=i, client_id=c, server_id=s, name=n, fields=MappingProxyType(f))
                    for i, c, s, n, f in items
                )
                for server_id, items in clients.items()
            }
        ),
        scopes_format,
        complete,
    )
