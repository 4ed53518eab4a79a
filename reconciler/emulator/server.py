"""Runs an emulator under uvicorn: ``serve`` in the foreground, ``running_emulator`` in a thread for tests.

The handle of ``running_emulator`` reaches the emulator through its admin surface over HTTP, as any
other process would, so that no state is shared between the test's thread and the server's loop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from reconciler.emulator.app import DroppedConnection, EmulatorConfig, create_app

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0


class QuietDroppedConnections(logging.Filter):
    """Drops uvicorn's traceback for a connection the emulator dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def quiet_dropped_connections() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, QuietDroppedConnections) for existing in logger.filters):
        logger.addFilter(QuietDroppedConnections())


def uvicorn_config(
    app: ASGIApp, *, host: str, port: int, quiet: bool, access_log: bool | None = None
) -> uvicorn.Config:
    """Settings for either use; ``quiet`` leaves the process's logging configuration alone and logs no
    request, unless ``access_log`` says otherwise."""
    extra: dict[str, Any] = {"log_config": None, "log_level": "warning"} if quiet else {"log_level": "info"}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",  # the dropped-connection fault is proven against this protocol implementation
        ws="none",
        lifespan="off",
        access_log=not quiet if access_log is None else access_log,
        timeout_graceful_shutdown=5,
        **extra,
    )
    quiet_dropped_connections()  # after Config, which may configure logging
    return config


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve an emulator until interrupted."""
    uvicorn.Server(uvicorn_config(create_app(config), host=host, port=port, quiet=False)).run()


@dataclass(frozen=True)
class RunningEmulator:
    """A started emulator: where it listens, how it was configured, and its admin surface."""

    base_url: str
    config: EmulatorConfig
    http: httpx.Client = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header the emulator accepts."""
        return {"Authorization": f"Bearer {self.config.project_id}:{self.config.management_key}"}

    def _admin(self, method: str, *, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.request(method, f"/emulator/{path}", json=body)
        if response.is_error:
            raise ValueError(f"emulator {path}: {response.status_code} {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", path="stats")

    def requests(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._admin("GET", path="requests")["requests"]
        return entries

    def reset(self, *, counters_only: bool = False) -> None:
        self._admin("POST", path="reset", body={"countersOnly": counters_only})

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store ``{"servers": [{..., "clients": [...]}], "resources": [...]}`` (either list may be left
        out) as given; answers ``{"servers": [...], "resources": [...]}`` with their ids and names."""
        return self._admin("POST", path="seed", body=body)

    def state(self) -> dict[str, Any]:
        return self._admin("GET", path="state")


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound before the server starts, so that the port (even a free one, 0) is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections (40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start; see the uvicorn log")
        time.sleep(0.005)


@contextmanager
def running_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEmulator]:
    """Run an emulator in a background thread for the duration of the ``with`` block."""
    app = create_app(config)  # here, so that a bad state file fails in the caller's thread
    sock = bound_socket(host, port)
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, quiet=True))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator", daemon=True)
    thread.start()
    try:
        wait_started(server, thread)
        netloc = f"[{host}]" if ":" in host else host
        base_url = f"http://{netloc}:{sock.getsockname()[1]}"
        auth = {"Authorization": f"Bearer {config.project_id}:{config.management_key}"}
        with httpx.Client(base_url=base_url, headers=auth, timeout=10) as http:
            yield RunningEmulator(base_url=base_url, config=config, http=http)
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_S)
        sock.close()
