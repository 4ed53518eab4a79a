"""Read the live project in a forked process while this one loads the manifests (plan and drift).

Loading a large tree of manifests and reading the live project each take seconds, and neither needs
the other until the plan is made: both are CPU-bound Python, so threads would take turns, while a
second process runs beside this one. The fetch starts as soon as the Project's ``projectId`` is
known (its file is read first). What it reads comes back as it is read, through a pipe that only the
two processes hold, in frames of plain data (``marshal``: dicts, lists and strings, never code): first
every server, then the clients of each server as its search answers, then the end. Once its manifests
are loaded, this process takes each frame as it comes (:class:`Arrivals`): a plan is made server by
server while the last searches are still on the network.

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
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import IO, Any, Protocol

from reconciler.descope.wire import FetchListener, LiveClient, LiveServer, LiveState, live_state
from reconciler.errors import ReconcilerError

PREFETCH_VARIABLE = "MCP_RECONCILER_PREFETCH"
_FORMAT = 2  # of what the child sends; both ends are this very file, but a stray reader is refused
_LENGTH = struct.Struct(">I")  # each frame's size, before it
_ENDING_GRACE = 2.0  # seconds a child that sent everything has to close its connections
log = logging.getLogger(__name__)
Fetch = Callable[[str, FetchListener], LiveState]  # (project id, told what is read as it is read)


class Arrivals(Protocol):
    """What the parent does with the live project as it arrives (see :meth:`Prefetch.take`)."""

    def servers(self, live: LiveState, reading: Sequence[str]) -> None:
        """``live`` holds every server; its clients fill in as the searches of ``reading`` answer."""

    def clients(self, server_id: str) -> None:
        """The clients of ``server_id`` are in ``live`` now."""


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

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._project_id: str | None = None
        self._pid: int | None = None
        self._reader: int | None = None
        self._delivered = False  # the child sent all it read: what is left of it is its own ending

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
        # Ctrl-C held back over the fork, so that the child never runs the command's own handling of
        # it: the child takes it once inside its own (and leaves at once), the parent right after.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
        except OSError as exc:  # no process to spare: read in this one later
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log.debug("prefetch: cannot fork (%s)", exc)
            os.close(reader)
            os.close(writer)
            return
        if pid == 0:  # the child: read, send, and leave without running the parent's exit handlers
            _child(self._fetch, project_id, reader, writer, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(writer)
        self._pid, self._reader = pid, reader
        log.info("reading the live project in process %d while the manifests load", pid)

    def take(self, project_id: str, arrivals: Arrivals | None = None) -> LiveState | None:
        """The live state the child read, when it read ``project_id``; None to read it here instead.
        ``arrivals`` is told of each part as it arrives. An API error the child met is raised, as it
        would have been raised here."""
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
                live = _received(stream, arrivals)
        except BaseException:  # arrivals failed, or an interrupt: the child is not waited for
            self.cancel()
            raise
        if live is None:  # it stopped short, or said what it should not: it is not waited for
            self.cancel()
            log.info("process %d did not finish reading the live project: reading it here", pid)
        else:
            self._delivered = True
            log.info("using the live project read by process %d", pid)
        return live

    def cancel(self) -> None:
        """Stop the child (the manifests were not usable, or the run ends): it only ever reads. One
        that sent all it read is only closing its connections: it is given a moment to end."""
        try:
            if self._pid is not None and self._delivered:
                self._wait_for_end(_ENDING_GRACE)
        finally:  # a second Ctrl-C while waiting still leaves no child behind
            if self._pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
            if self._reader is not None:
                os.close(self._reader)
                self._reader = None
            self._reap()

    def _wait_for_end(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._pid is not None and time.monotonic() < deadline:
            try:
                done, _status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                done = self._pid
            if done:
                self._pid = None
            else:
                time.sleep(0.005)

    def _reap(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None


@contextlib.contextmanager
def prefetching(fetch: Fetch, environ: Mapping[str, str]) -> Iterator[Prefetch | None]:
    """A :class:`Prefetch` for this run when one is allowed, never left running after the block."""
    if not allowed(environ):
        yield None
        return
    early = Prefetch(fetch)
    try:
        yield early
    finally:
        early.cancel()


def _child(fetch: Fetch, project_id: str, reader: int, writer: int, mask: Iterable[int]) -> None:
    code = 0
    try:
        os.close(reader)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a Ctrl-C held back over the fork lands here
        frames = _Frames(writer)
        try:
            frames.done(fetch(project_id, frames))
        except ReconcilerError as exc:  # the API's answer, or a setting: the parent says it
            frames.send(("error", pickle.dumps(exc)))
        if not frames.close():
            code = 1
    except BaseException:  # a bug or an interrupt: the parent reads the project itself
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


class _Frames:
    """The child's side: each part of the live project sent as it is read. A thread writes them, so
    that the reading never waits on the pipe while the parent is still loading its manifests."""

    def __init__(self, writer: int) -> None:
        self._writer = writer
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sent_servers = False
        self._sent_clients: set[str] = set()
        self._ended = False
        self._failed = False
        self._thread = threading.Thread(target=self._write, name="prefetch-writer", daemon=True)
        self._thread.start()
        self.send(("format", _FORMAT))

    def send(self, message: tuple[Any, ...]) -> None:
        self._queue.put(marshal.dumps(message))

    def servers(self, servers: tuple[LiveServer, ...], reading: Sequence[str], *, complete: bool) -> None:
        plain = [(s.id, s.name, dict(s.fields), s.scopes_format, s.surface) for s in servers]
        self.send(("servers", plain, list(reading), complete))
        self._sent_servers = True

    def clients(self, server_id: str, clients: tuple[LiveClient, ...]) -> None:
        plain = [(c.id, c.client_id, c.server_id, c.name, dict(c.fields)) for c in clients]
        self.send(("clients", server_id, plain))
        self._sent_clients.add(server_id)

    def done(self, live: LiveState) -> None:
        """The end (sent once). A fetch need not tell what it reads as it reads it (a Fetch may ignore
        its listener): what it left unsent is sent first, from the state it returned."""
        if self._ended:
            return
        if not self._sent_servers:
            self.servers(live.servers, list(live.clients), complete=live.complete)
        for server_id, clients in live.clients.items():
            if server_id not in self._sent_clients:
                self.clients(server_id, clients)
        self.send(("end", live.scopes_format, live.complete))
        self._ended = True

    def close(self) -> bool:
        """Wait until every frame is written; whether all were."""
        self._queue.put(None)
        self._thread.join()
        return not self._failed

    def _write(self) -> None:
        try:
            with os.fdopen(self._writer, "wb") as stream:
                while (data := self._queue.get()) is not None:
                    stream.write(_LENGTH.pack(len(data)))
                    stream.write(data)
                    if self._queue.empty():  # sent as soon as there is nothing more to send with it
                        stream.flush()
        except Exception:  # the parent is gone or stopped reading (or a bug): it reads the project itself
            self._failed = True


def _received(stream: IO[bytes], arrivals: Arrivals | None) -> LiveState | None:
    """The live state in the child's frames, ``arrivals`` told of each part; None when the child
    stopped before the end. An API error it met is raised."""
    if _frame(stream) != ("format", _FORMAT):
        return None
    live: LiveState | None = None
    clients: dict[str, tuple[LiveClient, ...]] = {}
    reading: list[str] = []
    while (message := _frame(stream)) is not None:
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "error":
            raise pickle.loads(message[1])  # noqa: S301 - written by our own child, through our own pipe
        if kind == "servers" and live is None:
            _kind, servers, reading, complete = message
            live = live_state(_servers(servers), clients, complete=complete)
            if arrivals is not None:
                arrivals.servers(live, reading)
        elif kind == "clients" and live is not None:
            _kind, server_id, items = message
            clients[server_id] = _clients(items)
            if arrivals is not None:
                arrivals.clients(server_id)
        elif kind == "end" and live is not None and set(clients) == set(reading):
            # The state the child returned, checked against the one built here (both are made by
            # live_state of the same parts: a difference is a broken stream, read again here).
            if message[1:] != (live.scopes_format, live.complete):
                return None
            ordered = {server_id: clients[server_id] for server_id in reading}  # as a fetch here orders them
            clients.clear()
            clients.update(ordered)
            return live
        else:
            return None
    return None


def _frame(stream: IO[bytes]) -> Any:
    """The next frame (None at the end of the stream, or where it breaks off)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    try:
        return marshal.loads(data)  # noqa: S302 - from our own child, through our own pipe
    except (EOFError, ValueError, TypeError):
        return None


def _clients(data: list[tuple[Any, ...]]) -> tuple[LiveClient, ...]:
    return tuple(
        LiveClient(id=i, client_id=c, server_id=s, name=n, fields=MappingProxyType(f))
        for i, c, s, n, f in data
    )


def _servers(data: list[tuple[Any, ...]]) -> tuple[LiveServer, ...]:
    return tuple(
        LiveServer(id=i, name=n, fields=MappingProxyType(f), scopes_format=shape, surface=surface)
        for i, n, f, shape, surface in data
    )
