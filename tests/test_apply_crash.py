"""apply killed with SIGKILL at seeded random moments, then re-run: the project still converges.

The emulator runs in this process (in a thread, with some latency so that a run lasts long enough to be
hit at many points); ``python -m reconciler apply`` runs as a subprocess that is killed after a delay
drawn from a seeded ``random.Random`` over the span of one undisturbed run (measured first). Each kill
point starts from the same pre-seeded project (owned servers and clients whose secrets are already in
the file sink) and a clean folder; the manifests create servers and clients and change some rotation
markers, so that kills land inside creates, deliveries and rotations. After the kill, apply runs again
(in process, not killed) until it exits 0, and the outcome is checked against the emulator's state.

``pytest --slow`` (or ``MCP_RECONCILER_SLOW=1``) runs 60 kill points instead of 12. The figures (where the kills landed, the
re-runs they needed) go to the test's user properties (``--junitxml``) and are printed (``-s``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.emulator.store import Store
from reconciler.journal import open_deliveries, read_events
from reconciler.tags import ROTATION_PREFIX

SLOW = os.environ.get("MCP_RECONCILER_SLOW") == "1"
KILL_POINTS = 60 if SLOW else 12
RANDOM_SEED = 20260 if SLOW else 4242
MAX_RERUNS = 3

KEY = "K2-apply-crash-key-5e0f"
PROJECT = "P2MCPRECONCILERCRASH"
OWNER = "managed-by:mcp-reconciler"
LATENCY_MS = 25
CONCURRENCY = "2"  # fewer requests at once: a longer run, with its steps more spread out in time

MUTATIONS = frozenset(
    {
        "server/create",
        "server/update",
        "servers/delete",
        "server/client/create",
        "server/client/update",
        "server/clients/delete",
        "server/client/secret/rotate",
    }
)

# The pre-seeded project: two owned servers with four owned clients each, delivered at marker v1.
SEEDED_SERVERS = ("north", "south")
SEEDED_CLIENTS = ("k0", "k1", "k2", "k3")
ROTATED = {("north", "k0"), ("north", "k1"), ("south", "k0"), ("south", "k2")}  # markers v1 -> v2
NEW_CLIENTS = {"north": ("n0", "n1", "n2"), "south": ("n0", "n1"), "east": ("e0", "e1", "e2", "e3")}
NEW_CLIENTS["west"] = ("w0", "w1", "w2", "w3")


def client_id(server: str, client: str) -> str:
    return f"MSC{server}{client}".ljust(30, "0")


def seeded_client_id(server: str, client: str) -> str:
    return f"{server}{client}".ljust(32, "x")


def seeded_secret(server: str, client: str) -> str:
    return f"seeded-{server}-{client}-secret-0123456789abcdef"


def preseeded_state() -> dict[str, Any]:
    return {
        "servers": [
            {
                "id": f"MS{server}".ljust(29, "0"),
                "name": server,
                "tags": [OWNER],
                "approvedScopes": [{"name": "read"}],
                "clients": [
                    {
                        "id": client_id(server, client),
                        "clientId": seeded_client_id(server, client),
                        "name": client,
                        "scopes": ["read"],
                        "tags": [OWNER, ROTATION_PREFIX + "v1"],
                        "secret": seeded_secret(server, client),
                    }
                    for client in SEEDED_CLIENTS
                ],
            }
            for server in SEEDED_SERVERS
        ]
    }


def expected_objects() -> dict[str, list[str]]:
    expected = {server: [*SEEDED_CLIENTS, *NEW_CLIENTS[server]] for server in SEEDED_SERVERS}
    expected |= {server: list(NEW_CLIENTS[server]) for server in ("east", "west")}
    return {server: sorted(clients) for server, clients in expected.items()}


def write_manifests(folder: Path, rotated: set[tuple[str, str]] | None = None) -> Path:
    """The manifests, in ``folder/manifests``, and the sink already holding the pre-seeded secrets."""
    rotated = ROTATED if rotated is None else rotated
    sink = folder / "secrets" / "clients.json"
    manifests = folder / "manifests"
    manifests.mkdir(parents=True)
    sink.parent.mkdir(mode=0o700)
    held = {
        f"{s}/{c}": {
            "server": s,
            "client": c,
            "clientId": seeded_client_id(s, c),
            "clientSecret": seeded_secret(s, c),
        }
        for s in SEEDED_SERVERS
        for c in SEEDED_CLIENTS
    }
    sink.write_text(json.dumps(held, indent=2) + "\n")
    sink.chmod(0o600)
    (manifests / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\n"
        f"sinks:\n  local: {{type: file, path: {sink}}}\n"
    )
    for server, clients in expected_objects().items():
        lines = [f"kind: MCPServer\nname: {server}\napprovedScopes: [{{name: read}}]\nclients:"]
        for client in clients:
            if client in SEEDED_CLIENTS:
                marker = "v2" if (server, client) in rotated else "v1"
            else:
                marker = "v1" if client.endswith(("0", "2")) else ""
            secret = f", secret: {{rotation: {marker}}}" if marker else ""
            lines.append(f"  - {{name: {client}, scopes: [read]{secret}}}")
        (manifests / f"{server}.yaml").write_text("\n".join(lines) + "\n")
    return manifests


@dataclass
class RotationCounter:
    """Rotations the emulator (in this process) carried out, by client id."""

    counts: Counter[str] = field(default_factory=Counter)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rotate_secret = Store.rotate_secret

        def counting(store: Store, body: dict[str, Any]) -> str:
            secret = rotate_secret(store, body)
            self.counts[str(body["id"])] += 1
            return secret

        monkeypatch.setattr(Store, "rotate_secret", counting)


@dataclass
class Lab:
    emulator: RunningEmulator
    rotations: RotationCounter

    def restart(self) -> None:
        """Back to the pre-seeded project, with counters cleared."""
        self.emulator.reset()
        self.emulator.seed(preseeded_state())
        self.rotations.counts.clear()

    def environ(self) -> dict[str, str]:
        own = ("DESCOPE_", "MCP_RECONCILER_", "GITHUB_")  # nothing from the developer's shell or CI job
        keep = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        return {**keep, "DESCOPE_BASE_URL": self.emulator.base_url, "DESCOPE_MANAGEMENT_KEY": KEY}

    def start_apply(self, folder: Path) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            str(folder / "manifests"),
            "--auto-approve",
            "--concurrency",
            CONCURRENCY,
            "--journal",
            str(folder / "journal.jsonl"),
        ]
        with (folder / "killed-run.log").open("wb") as log:
            return subprocess.Popen(
                command, cwd=folder, env=self.environ(), stdout=log, stderr=subprocess.STDOUT
            )

    def settle(self) -> None:
        """Wait until the emulator has answered every request a killed run left in flight.

        A request sent just before the kill may still sit in the emulator's socket buffer: the log must
        also stop growing. A request whose body was still on its way when the kill came is never
        answered (the emulator sees the client disconnect before handling it) and stays unanswered.
        """
        patience = 4 * self.emulator.config.latency_ms / 1000 + 0.25
        deadline = time.monotonic() + 10
        seen = -1
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            entries = self.emulator.requests()
            waiting = [e for e in entries if e["status"] is None and e["t"] > now - patience]
            if not waiting and len(entries) == seen:
                return
            seen = len(entries)
            assert now < deadline, f"requests still in flight 10 s after the kill: {waiting}"


class QuietDisconnects(logging.Filter):
    """Drops uvicorn's traceback for a request whose client was killed before sending all of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))


def _lab(monkeypatch: pytest.MonkeyPatch, latency_ms: float) -> Iterator[Lab]:
    counter = RotationCounter()
    counter.install(monkeypatch)
    uvicorn_log = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(uvicorn_log, "filters", [*uvicorn_log.filters, QuietDisconnects()])
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, latency_ms=latency_ms)
    with running_emulator(config) as handle:
        monkeypatch.setenv("DESCOPE_BASE_URL", handle.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        monkeypatch.delenv("MCP_RECONCILER_JOURNAL", raising=False)
        lab = Lab(handle, counter)
        lab.restart()
        yield lab


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    yield from _lab(monkeypatch, LATENCY_MS)


def apply_in_process(folder: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(folder)
    return int(
        run(
            [
                "apply",
                str(folder / "manifests"),
                "--auto-approve",
                "--journal",
                str(folder / "journal.jsonl"),
            ]
        )
    )


def rerun_until_clean(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []
    for _ in range(MAX_RERUNS):
        codes.append(apply_in_process(folder, monkeypatch))
        if codes[-1] == 0:
            return codes
        assert codes[-1] in (1, 3), codes
    pytest.fail(f"apply did not exit 0 in {MAX_RERUNS} re-runs after the kill: {codes}")


def check_converged(lab: Lab, folder: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """Everything a finished apply promises, checked against the emulator's own state."""
    manifests = str(folder / "manifests")
    capsys.readouterr()
    assert run(["plan", manifests, "--detailed-exitcode"]) == 0, f"{where}: {capsys.readouterr().out}"

    servers = lab.emulator.state()["servers"]
    names = [s["name"] for s in servers]
    assert len(names) == len(set(names)), f"{where}: duplicate servers {sorted(names)}"
    live: dict[str, dict[str, dict[str, Any]]] = {}
    for server in servers:
        clients = [c["name"] for c in server["clients"]]
        assert len(clients) == len(set(clients)), f"{where}: duplicate clients in {server['name']}"
        live[server["name"]] = {c["name"]: c for c in server["clients"]}
    assert {s: sorted(cs) for s, cs in live.items()} == expected_objects(), where

    held = {
        k: v["clientSecret"] for k, v in json.loads((folder / "secrets" / "clients.json").read_text()).items()
    }
    current = {f"{s}/{name}": c["secret"] for s, cs in live.items() for name, c in cs.items()}
    assert held == current, f"{where}: the sink does not hold every current secret"

    for server in SEEDED_SERVERS:
        for name in SEEDED_CLIENTS:
            client = live[server][name]
            if (server, name) in ROTATED:
                assert client["secret"] != seeded_secret(server, name), (
                    f"{where}: {server}/{name} not rotated"
                )
                assert ROTATION_PREFIX + "v2" in client["tags"], (
                    f"{where}: {server}/{name} marker not recorded"
                )
                assert lab.rotations.counts[client["id"]] >= 1, where
            else:
                assert client["secret"] == seeded_secret(server, name), f"{where}: {server}/{name} rotated"
                assert lab.rotations.counts[client["id"]] == 0, where
    assert run(["secrets", "check", manifests, "--journal", str(folder / "journal.jsonl")]) == 0, where


def unrecorded_rotations(lab: Lab, journal: Path) -> set[tuple[str, str]]:
    """Clients whose rotated secret the killed run delivered without its marker reaching the client."""
    rotating: set[tuple[str, str]] = set()
    delivered: set[tuple[str, str]] = set()
    for event in read_events(journal):
        key = (str(event.get("server")), str(event.get("client")))
        if event["event"] == "rotate-started":
            rotating.add(key)
        elif event["event"] == "delivered" and key in rotating:
            delivered.add(key)
    recorded = {
        (server["name"], client["name"])
        for server in lab.emulator.state()["servers"]
        for client in server["clients"]
        if ROTATION_PREFIX + "v2" in client.get("tags", [])
    }
    return delivered - recorded


def landing(lab: Lab, folder: Path, exited: bool) -> tuple[str, str]:
    """Where a kill landed: before (no change made yet), during, or after (the run had exited), and,
    from the journal the killed run left, the step it interrupted."""
    if exited:
        return "after", "the run had exited"
    requests = lab.emulator.requests()
    if not requests:
        return "before", "before the first request"
    if not any(e["endpoint"] in MUTATIONS for e in requests):
        return "before", "reading the live project, no change made"
    journal = folder / "journal.jsonl"
    events = [e["event"] for e in read_events(journal)]
    pending = {item.event for item in open_deliveries(journal, PROJECT)}
    steps = [
        ("rotate-started" in pending, "inside a rotation, before its delivery"),
        (bool(unrecorded_rotations(lab, journal)), "after a rotation's delivery, before its marker"),
        ("create-started" in pending, "inside a client create"),
        ("apply-finished" in events, "after apply-finished"),
        ("server-created" in events and "create-started" not in events, "creating servers"),
    ]
    last = events[-1] if events else "none"
    return "during", next((step for hit, step in steps if hit), f"between steps (last event: {last})")


def test_apply_killed_at_random_points_converges_on_rerun(
    lab: Lab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()

    # Calibrate: one undisturbed run, timed from the start of the process to its first request and exit.
    calibration = tmp_path / "calibration"
    write_manifests(calibration)
    t0 = time.monotonic()
    process = lab.start_apply(calibration)
    assert process.wait(timeout=60) == 0, (calibration / "killed-run.log").read_text()
    duration = time.monotonic() - t0
    first_request = min(e["t"] for e in lab.emulator.requests()) - t0
    check_converged(lab, calibration, capsys, "undisturbed run")
    assert sum(lab.rotations.counts.values()) == len(ROTATED)

    # Kill points from a little before the first request to a little after the exit.
    rng = random.Random(RANDOM_SEED)  # noqa: S311 - repeatable kill points, not cryptography
    low, high = 0.8 * first_request, 1.05 * duration
    where: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    reruns: Counter[int] = Counter()
    repeated_rotations = 0
    for point in range(KILL_POINTS):
        lab.restart()
        folder = tmp_path / f"kill-{point:02}"
        write_manifests(folder)
        delay = rng.uniform(low, high)
        process = lab.start_apply(folder)
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)  # a no-op if it has exited since: it is not reaped yet
        code = process.wait(timeout=60)
        exited = code != -signal.SIGKILL
        assert not exited or code == 0, (folder / "killed-run.log").read_text()
        lab.settle()
        phase, step = landing(lab, folder, exited)
        where[phase] += 1
        steps[step] += 1
        exposed = unrecorded_rotations(lab, folder / "journal.jsonl")

        codes = rerun_until_clean(folder, monkeypatch)
        reruns[len(codes)] += 1
        label = f"kill point {point} at {delay:.3f} s ({phase}: {step}), re-runs {codes}"
        check_converged(lab, folder, capsys, label)
        # Exactly one rotation per changed marker, wherever the kill landed: a rotation caught after
        # its delivery and before its marker was recorded stays open in the journal, and the next run
        # records the marker instead of rotating again.
        counts = {key: lab.rotations.counts[client_id(*key)] for key in ROTATED}
        repeated = {key: n for key, n in counts.items() if n != 1}
        assert repeated == {}, f"{label} (exposed: {sorted(exposed)})"
        repeated_rotations += sum(n - 1 for n in counts.values())

    figures: dict[str, object] = {
        "kill points": KILL_POINTS,
        "undisturbed run (s)": round(duration, 3),
        "first request after (s)": round(first_request, 3),
        "before": where["before"],
        "during": where["during"],
        "after": where["after"],
        "interrupted steps": dict(steps),
        "re-runs needed": dict(reruns),
        # Must be 0: see test_a_kill_between_delivery_and_marker_does_not_rotate_twice.
        "rotations repeated": repeated_rotations,
        "seconds": round(time.monotonic() - started, 1),
    }
    for name, value in figures.items():
        request.node.user_properties.append((name, value))
    with capsys.disabled():
        print(f"\n{request.node.name}: {figures}")
    assert sum(where.values()) == KILL_POINTS


@pytest.fixture
def slow_lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """Slow answers: the few calls between a rotation's delivery and its marker take long enough to be
    hit every time."""
    yield from _lab(monkeypatch, 150)


def test_a_kill_between_delivery_and_marker_does_not_rotate_twice(
    slow_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = slow_lab
    folder = tmp_path / "kill"
    only = {("north", "k0")}
    write_manifests(folder, rotated=only)
    journal = folder / "journal.jsonl"
    process = lab.start_apply(folder)
    deadline = time.monotonic() + 30
    rotating = False
    # Kill as soon as the rotated secret is reported delivered.
    while process.poll() is None and time.monotonic() < deadline:
        for event in read_events(journal):
            rotating = rotating or (event["event"] == "rotate-started" and event["client"] == "k0")
            if rotating and event["event"] == "delivered" and event["client"] == "k0":
                os.kill(process.pid, signal.SIGKILL)
                break
        time.sleep(0.002)
    assert process.wait(timeout=30) == -signal.SIGKILL, (folder / "killed-run.log").read_text()
    lab.settle()
    rotated = client_id("north", "k0")
    assert lab.rotations.counts[rotated] == 1
    (north,) = [s for s in lab.emulator.state()["servers"] if s["name"] == "north"]
    (k0,) = [c for c in north["clients"] if c["name"] == "k0"]
    assert ROTATION_PREFIX + "v2" not in k0["tags"]  # the kill came before the marker was recorded
    delivered = k0["secret"]

    assert rerun_until_clean(folder, monkeypatch) == [0]
    capsys.readouterr()
    assert run(["plan", str(folder / "manifests"), "--detailed-exitcode"]) == 0
    # One marker change, one rotation: the secret the killed run delivered is still the live one.
    assert lab.rotations.counts[rotated] == 1
    (north,) = [s for s in lab.emulator.state()["servers"] if s["name"] == "north"]
    (k0,) = [c for c in north["clients"] if c["name"] == "k0"]
    assert k0["secret"] == delivered
