"""The fault matrix: apply under each kind of bad day, over real HTTP, until it converges.

Each scenario creates the example project and then rotates two secrets, re-running apply until it
exits 0 (a bounded number of times), and then checks the outcome: no duplicate objects, every
secret in its sink equal to Descope's current secret, an empty plan, ``secrets check`` passing and
a journal that says how the last run ended. Set ``MCP_RECONCILER_RELIABILITY_OUT`` to a file to
collect the figures that RELIABILITY.md reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, running_emulator
from reconciler.journal import read_events
from tests.conftest import ROOT

KEY = "K2-fault-matrix-key-2b7e"
PROJECT = "P2MCPRECONCILERDEMO"
MAX_RUNS = 4
FIGURES = os.environ.get("MCP_RECONCILER_RELIABILITY_OUT")


@dataclass
class Outcome:
    scenario: str
    runs: list[list[int]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """An emulator reachable over HTTP, with its admin surface; in-process or as a restartable process."""

    base_url: str
    state: Callable[[], dict[str, Any]]
    stats: Callable[[], dict[str, Any]]


@contextmanager
def in_process(**config: Any) -> Iterator[Target]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY, **config)) as handle:
        yield Target(handle.base_url, handle.state, handle.stats)


def _apply_rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target, outcome: Outcome) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", manifests)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCOPE_BASE_URL", target.base_url)
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    monkeypatch.setenv("MCP_VAR_SECRETS_DIR", str(tmp_path / "secrets"))
    calendar = manifests / "servers" / "calendar.yaml"
    for round_number in range(2):
        if round_number == 1:  # rotate two secrets
            text = calendar.read_text().replace('rotation: "2026-11-01"', 'rotation: "2026-12-01"')
            calendar.write_text(
                text.replace(
                    "key: CALENDAR_REPORTING_CLIENT_SECRET",
                    "key: CALENDAR_REPORTING_CLIENT_SECRET\n      rotation: r1",
                )
            )
        codes = []
        for _ in range(MAX_RUNS):
            codes.append(run(["apply", str(manifests), "--auto-approve"]))
            if codes[-1] == 0:
                break
        outcome.runs.append(codes)
        assert codes[-1] == 0, f"round {round_number}: {codes}"
        assert set(codes[:-1]) <= {1, 3}
    assert run(["plan", str(manifests), "--detailed-exitcode"]) == 0
    assert run(["secrets", "check", str(manifests)]) == 0
    _check(tmp_path, target)
    finished = [
        e
        for e in read_events(manifests / ".mcp-reconciler" / "journal.jsonl")
        if e["event"] == "apply-finished"
    ]
    assert finished[-1]["failed"] == finished[-1]["skipped"] == finished[-1]["undelivered"] == 0
    outcome.stats = target.stats()


def _check(tmp_path: Path, target: Target) -> None:
    servers = target.state()["servers"]
    assert not [n for n, c in Counter(s["name"] for s in servers).items() if c > 1], "duplicate servers"
    for server in servers:
        names = Counter(c["name"] for c in server.get("clients", []))
        assert not [n for n, c in names.items() if c > 1], f"duplicate clients in {server['name']}"
    live = {f"{s['name']}/{c['name']}": c["secret"] for s in servers for c in s.get("clients", [])}
    assert len(live) == 5
    held = {
        k: v["clientSecret"]
        for k, v in json.loads((tmp_path / "secrets" / "mcp-clients.json").read_text()).items()
    }
    dotenv = dict(
        line.split("=", 1)
        for line in (tmp_path / "secrets" / "agents.env").read_text().splitlines()
        if "=" in line
    )
    held["calendar/reporting-job"] = dotenv["CALENDAR_REPORTING_CLIENT_SECRET"].strip("'")
    assert held == live


def _record(outcome: Outcome) -> None:
    if FIGURES:
        with Path(FIGURES).open("a") as stream:
            stream.write(
                json.dumps({"scenario": outcome.scenario, "runs": outcome.runs, "stats": outcome.stats})
                + "\n"
            )


SCENARIOS: dict[str, dict[str, Any]] = {
    "429 storm (server allows 8 per second)": {"rate_limit": (8, 1.0)},
    "5xx before the change (30%)": {"fault_rate": 0.3, "seed": 3},
    "5xx or dropped connection after the change (30%)": {"fault_after_commit_rate": 0.3, "seed": 5},
    "answers past the client's timeout (20%)": {"slow_rate": 0.2, "slow_ms": 600, "seed": 9},
    "everything at once": {
        "fault_rate": 0.1,
        "fault_after_commit_rate": 0.2,
        "slow_rate": 0.1,
        "slow_ms": 600,
        "rate_limit": (20, 1.0),
        "seed": 13,
    },
}


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(range(len(SCENARIOS))))
def test_apply_converges_under(scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_RECONCILER_TIMEOUT", "0.3")
    outcome = Outcome(scenario)
    with in_process(**SCENARIOS[scenario]) as target:
        _apply_rounds(tmp_path, monkeypatch, target, outcome)
    _record(outcome)
    faults = sum(
        outcome.stats.get(k, 0) for k in ("rateLimited", "faultsBefore", "faultsAfterCommit", "slowed")
    )
    assert faults > 0, "the scenario injected no fault"


# ---- a restart of the emulator in the middle of an apply ----------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(port: int, state: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "reconciler", "emulator", "--port", str(port), "--project-id", PROJECT]
    command += ["--state-file", str(state), "--latency-ms", "40"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "DESCOPE_MANAGEMENT_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(
                f"http://127.0.0.1:{port}/emulator/stats",
                headers={"Authorization": f"Bearer {PROJECT}:{KEY}"},
                timeout=1,
            )
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the emulator did not start")


def test_apply_converges_across_an_emulator_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, state = _free_port(), tmp_path / "emulator-state.json"
    base = f"http://127.0.0.1:{port}"
    processes = [_start(port, state)]

    def admin(path: str) -> Callable[[], dict[str, Any]]:
        def call() -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {PROJECT}:{KEY}"}
            response = httpx.get(f"{base}/emulator/{path}", headers=headers, timeout=10)
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

        return call

    def restart_soon() -> None:
        time.sleep(0.4)  # the first apply is under way: reading, then creating
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait()
        time.sleep(0.5)
        processes.append(_start(port, state))

    outcome = Outcome("emulator killed and restarted mid-apply (state file)")
    restarter = threading.Thread(target=restart_soon)
    restarter.start()
    try:
        _apply_rounds(tmp_path, monkeypatch, Target(base, admin("state"), admin("stats")), outcome)
    finally:
        restarter.join()
        for process in processes:
            process.kill()
            process.wait()
    assert len(processes) == 2
    _record(outcome)
