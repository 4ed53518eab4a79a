"""``mcp-reconciler emulator --state-file demo.json``, run as the README documents it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reconciler.api import DescopeClient

KEY = "K2-command-test-key-77aa"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(state: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "DESCOPE_MANAGEMENT_KEY": KEY, "DESCOPE_PROJECT_ID": "P2CMD"}
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--state-file", str(state), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/mgmt/mcp/servers/all", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the emulator did not start")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 130, output  # interrupted, by convention
    assert output.endswith("Emulator stopped.\n")
    return output


async def _create_then_list(port: int, name: str | None) -> list[str]:
    async with DescopeClient(
        project_id="P2CMD", management_key=KEY, base_url=f"http://127.0.0.1:{port}"
    ) as api:
        if name:
            await api.create_server({"name": name})
        return [s.name for s in await api.load_all_servers()]


def test_state_survives_a_restart_and_the_key_is_never_printed(tmp_path: Path) -> None:
    state, port = tmp_path / "demo.json", _free_port()
    first = _start(state, port)
    try:
        assert asyncio.run(_create_then_list(port, "kept")) == ["kept"]
    finally:
        output = _stop(first)
    assert f"Descope emulator for project P2CMD on http://127.0.0.1:{port}, state in {state}" in output
    assert state.stat().st_mode & 0o777 == 0o600
    second = _start(state, port)
    try:
        assert asyncio.run(_create_then_list(port, None)) == ["kept"]
    finally:
        output += _stop(second)
    assert KEY not in output


def test_a_missing_key_or_bad_option_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DESCOPE_MANAGEMENT_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == "error: set DESCOPE_MANAGEMENT_KEY (or --management-key): the key the emulator will accept\n"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator", "--rate-limit", "lots"],
        env={**env, "DESCOPE_MANAGEMENT_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr == "error: invalid rate limit 'lots': expected REQUESTS/SECONDS, e.g. 400/10\n"
