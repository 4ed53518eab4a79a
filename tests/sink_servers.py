"""Real servers on 127.0.0.1 for the sink tests: OpenBao (dev mode), moto, and a GitHub stand-in.

OpenBao and moto run as child processes; the GitHub stand-in is a Starlette app under uvicorn in a
thread that holds a real libsodium key pair and decrypts what it is sent, so a test can compare the
decrypted value with the secret it delivered.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from nacl.public import PrivateKey, SealedBox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.server import bound_socket, uvicorn_config, wait_started
from reconciler.sinks.base import SinkError

STARTUP_TIMEOUT_S = 30.0


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged during the test's setup and call, formatted with tracebacks.

    ``caplog.text`` after a fixture's ``yield`` holds only the teardown's records, hence this.
    """
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = caplog.get_records("setup") + caplog.get_records("call")
    return "\n".join(formatter.format(record) for record in records)


def expect_sink_error(call: Callable[[], object], canary: str) -> str:
    """Run ``call``, which must raise SinkError; its message, checked to hold no trace of ``canary``."""
    with pytest.raises(SinkError) as caught:
        call()
    error = caught.value
    assert canary not in str(error)
    assert error.__cause__ is None or canary not in str(error.__cause__)
    assert error.__suppress_context__ or error.__context__ is None or canary not in str(error.__context__)
    return str(error)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers anything below 500; fail with the log if the process ends."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {STARTUP_TIMEOUT_S} s")


@contextmanager
def child_server(argv: list[str], health_url: str, workdir: Path, env: dict[str, str]) -> Iterator[None]:
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    try:
        wait_http(health_url, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def tool(name: str) -> str:
    """A console script of this venv (where pip put it), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[dev]'")
    return found


# ---- OpenBao ---------------------------------------------------------------------------------


@contextmanager
def running_openbao(root_token: str, workdir: Path) -> Iterator[str]:
    """``bao server -dev`` on a free loopback port (KV v2 at secret/); yields its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        tool("bao"),
        "server",
        "-dev",
        f"-dev-root-token-id={root_token}",
        f"-dev-listen-address={url.removeprefix('http://')}",
    ]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)}  # dev mode writes ~/.vault-token
    with child_server(argv, f"{url}/v1/sys/health", workdir, env):
        yield url


# ---- moto --------------------------------------------------------------------------------------


@contextmanager
def running_moto(workdir: Path) -> Iterator[str]:
    """moto's server (all services, in memory) on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "HOME": str(workdir)}
    with child_server(argv, f"{url}/moto-api/", workdir, env):
        yield url


# ---- GitHub ------------------------------------------------------------------------------------

READ, WRITE = "read", "write"


@dataclass
class GithubStandIn:
    """The Actions-secrets endpoints of one GitHub: repositories, environments, tokens and a key pair."""

    repositories: set[str] = field(default_factory=set)
    environments: set[tuple[str, str]] = field(default_factory=set)  # (owner/repo, environment)
    tokens: dict[str, set[str]] = field(default_factory=dict)  # token -> permissions
    key: PrivateKey = field(default_factory=PrivateKey.generate)
    key_id: str = "key-1"
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)  # (scope, NAME) -> decrypted value
    requests: list[tuple[str, str]] = field(default_factory=list)
    failures: int = 0  # how many of the next requests get a 502
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def rotate_key(self) -> None:
        with self.lock:
            self.key = PrivateKey.generate()
            self.key_id = f"key-{int(self.key_id.removeprefix('key-')) + 1}"

    def app(self) -> Starlette:
        base = "/repos/{owner}/{repo}"
        env = base + "/environments/{environment}/secrets"
        return Starlette(
            routes=[
                Route(base + "/actions/secrets/public-key", self.public_key),
                Route(base + "/actions/secrets/{name}", self.secret, methods=["GET", "PUT"]),
                Route(env + "/public-key", self.public_key),
                Route(env + "/{name}", self.secret, methods=["GET", "PUT"]),
            ]
        )

    async def public_key(self, request: Request) -> Response:
        refused = self._refuse(request, READ)
        if refused:
            return refused
        public = base64.b64encode(bytes(self.key.public_key)).decode()
        return JSONResponse({"key_id": self.key_id, "key": public})

    async def secret(self, request: Request) -> Response:
        refused = self._refuse(request, WRITE if request.method == "PUT" else READ)
        if refused:
            return refused
        slot = (_scope(request), request.path_params["name"])
        if request.method == "GET":
            if slot not in self.secrets:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            return JSONResponse({"name": slot[1], "created_at": "2026-01-01T00:00:00Z"})
        body: dict[str, Any] = await request.json()
        with self.lock:
            if body.get("key_id") != self.key_id:
                return JSONResponse({"message": "key_id does not match the current key"}, status_code=422)
            sealed = base64.b64decode(body["encrypted_value"])
            existed = slot in self.secrets
            self.secrets[slot] = SealedBox(self.key).decrypt(sealed).decode("utf-8")
        return Response(status_code=204 if existed else 201)

    def _refuse(self, request: Request, permission: str) -> Response | None:
        """401/403/404 as GitHub answers them; None when the request may go on."""
        self.requests.append((request.method, request.url.path))
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                return JSONResponse({"message": "Server Error"}, status_code=502)
        if request.headers.get("accept") != "application/vnd.github+json" or (
            request.headers.get("x-github-api-version") != "2022-11-28"
        ):
            return JSONResponse({"message": "missing GitHub API headers"}, status_code=400)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
        environment = request.path_params.get("environment")
        if repository not in self.repositories or (
            environment is not None and (repository, environment) not in self.environments
        ):
            return JSONResponse({"message": "Not Found"}, status_code=404)
        if permission not in self.tokens[token]:
            return JSONResponse({"message": "Resource not accessible by integration"}, status_code=403)
        return None


def _scope(request: Request) -> str:
    repository = f"{request.path_params['owner']}/{request.path_params['repo']}"
    environment = request.path_params.get("environment")
    return f"{repository}:{environment}" if environment else repository


@contextmanager
def running_github(stand_in: GithubStandIn) -> Iterator[GithubStandIn]:
    """Serve ``stand_in`` over HTTP on a free loopback port, in a thread; sets its ``url``."""
    sock = bound_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(stand_in.app(), host="127.0.0.1", port=0, quiet=True))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="github", daemon=True)
    thread.start()
    try:
        wait_started(server, thread)
        stand_in.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield stand_in
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
