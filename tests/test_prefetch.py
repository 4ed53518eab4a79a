"""The live project read ahead in a forked process while the manifests load (reconciler.prefetch).

It is a head start and nothing else: the plan and drift made with it equal those made without it, with
the same number of API calls; an API error the child met is the error the user sees, unchanged; a
child that fails otherwise, or read another project, is never used; no child outlives the run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.descope.endpoints import CLIENT_ENDPOINTS
from reconciler.descope.wire import FetchListener, LiveClient, LiveServer, LiveState
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.errors import ApiError, ApiUnavailable, ManifestError, RateLimited, Unauthorized, UsageError
from reconciler.manifest import load_manifest
from reconciler.prefetch import PREFETCH_VARIABLE, Fetch, Prefetch, allowed
from tests.conftest import Writer

KEY = "K2-prefetch-key-7a1e"
PROJECT = "P2PREFETCH"
SCRIPT = Path(sys.executable).parent / "mcp-reconciler"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prefetch forks on Linux only")


def live_state() -> LiveState:
    server = LiveServer(
        id="MS1",
        name="billing",
        fields=MappingProxyType({"id": "MS1", "name": "billing", "approvedScopes": [{"name": "r"}]}),
        scopes_format="categorized",
    )
    client = LiveClient(
        id="C1", client_id="cid", server_id="MS1", name="ci", fields=MappingProxyType({"tags": ["a"]})
    )
    return LiveState((server,), MappingProxyType({"MS1": (client,)}), "categorized", complete=True)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists (reaped, not a zombie)."""
    return not Path(f"/proc/{pid}").exists()


# --- the mechanism, in this process -----------------------------------------------------------------


def test_the_state_read_in_the_child_comes_back_equal() -> None:
    early = Prefetch(lambda _project, _listener: live_state())
    early.start(PROJECT)
    assert early.take(PROJECT) == live_state()


def test_a_state_read_for_another_project_is_not_used_and_its_reader_is_stopped() -> None:
    early = Prefetch(slow)
    early.start(PROJECT)
    pid = early._pid
    assert pid is not None
    started = time.monotonic()
    assert early.take("P2OTHER") is None
    assert time.monotonic() - started < 10  # killed, not waited for
    assert gone(pid)


@pytest.mark.parametrize(
    "error",
    [
        Unauthorized("bad key", endpoint=CLIENT_ENDPOINTS.list, status=401, error_code="E1"),
        RateLimited("slow down", endpoint=CLIENT_ENDPOINTS.list, retry_after=3.5),
        ApiUnavailable("could not connect to 127.0.0.1:1", endpoint=CLIENT_ENDPOINTS.list),
        UsageError("MCP_RECONCILER_TIMEOUT='x' is not a usable timeout"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_the_child_met_is_raised_whole(error: Exception) -> None:
    def failing(project: str, listener: FetchListener) -> LiveState:
        raise error

    early = Prefetch(failing)
    early.start(PROJECT)
    with pytest.raises(type(error)) as raised:
        early.take(PROJECT)
    assert str(raised.value) == str(error)
    assert vars(raised.value) == vars(error)  # endpoint, status, error_code, retry_after
    if isinstance(error, ApiError):
        assert isinstance(raised.value, ApiError)


def test_a_child_that_crashes_is_not_used() -> None:
    def buggy(project: str, listener: FetchListener) -> LiveState:
        raise RuntimeError("a bug")

    early = Prefetch(buggy)
    early.start(PROJECT)
    assert early.take(PROJECT) is None


def test_a_child_killed_midway_is_not_used() -> None:
    def killed(project: str, listener: FetchListener) -> LiveState:
        os.kill(os.getpid(), signal.SIGKILL)
        return live_state()

    early = Prefetch(killed)
    early.start(PROJECT)
    assert early.take(PROJECT) is None


def slow(_project: str, _listener: FetchListener) -> LiveState:
    time.sleep(60)
    return live_state()


def test_cancel_stops_and_reaps_the_child() -> None:
    early = Prefetch(slow)
    early.start(PROJECT)
    pid = early._pid
    assert pid is not None
    early.cancel()
    assert gone(pid)
    assert early.take(PROJECT) is None


def many_servers(count: int, clients: int, padding: int = 0) -> LiveState:
    servers = tuple(
        LiveServer(
            id=f"MS{n}",
            name=f"s{n}",
            fields=MappingProxyType({"id": f"MS{n}", "name": f"s{n}", "description": "x" * padding}),
            scopes_format="categorized",
        )
        for n in range(count)
    )
    found = {
        f"MS{n}": tuple(
            LiveClient(
                id=f"C{n}-{k}",
                client_id=f"cid{n}-{k}",
                server_id=f"MS{n}",
                name=f"c{k}",
                fields=MappingProxyType({"tags": ["t"], "description": "y" * padding}),
            )
            for k in range(clients)
        )
        for n in range(count)
    }
    return LiveState(servers, MappingProxyType(found), "categorized", complete=True)


class Recorder:
    """An Arrivals that notes what it is told, and what ``live`` holds when it is told."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.told: list[tuple[str, object]] = []
        self.live: LiveState | None = None
        self.fail_at = fail_at

    def servers(self, live: LiveState, reading: Sequence[str]) -> None:
        self.live = live
        self.told.append(("servers", (len(live.servers), tuple(reading), len(live.clients))))

    def clients(self, server_id: str) -> None:
        assert self.live is not None
        self.told.append(("clients", (server_id, len(self.live.clients_of(server_id)))))
        if self.fail_at is not None and len(self.told) > self.fail_at:
            raise RuntimeError("arrivals failed")


def streaming(state: LiveState, order: Sequence[str], pause: float = 0.0) -> Fetch:
    """A fetch that tells what it reads as a real one does: the servers, then each server's clients."""

    def fetch(_project: str, listener: FetchListener) -> LiveState:
        listener.servers(state.servers, list(state.clients), complete=state.complete)
        for server_id in order:
            time.sleep(pause)
            listener.clients(server_id, state.clients_of(server_id))
        return state

    return fetch


def test_each_part_is_told_as_it_arrives_and_the_whole_comes_back_in_the_fetchs_order() -> None:
    state = many_servers(5, 3)
    order = ["MS3", "MS0", "MS4", "MS1", "MS2"]
    early = Prefetch(streaming(state, order))
    early.start(PROJECT)
    told = Recorder()
    live = early.take(PROJECT, told)
    assert live == state
    assert live is told.live  # the very state the arrivals planned against
    assert list(live.clients) == list(state.clients)  # ordered as a fetch in this process orders them
    assert told.told == [
        ("servers", (5, tuple(state.clients), 0)),
        *[("clients", (server_id, 3)) for server_id in order],
    ]


def test_a_fetch_that_tells_nothing_as_it_reads_is_still_told_whole() -> None:
    state = many_servers(3, 2)
    early = Prefetch(lambda _project, _listener: state)
    early.start(PROJECT)
    told = Recorder()
    assert early.take(PROJECT, told) == state
    assert [what for what, _ in told.told] == ["servers", "clients", "clients", "clients"]


def test_more_than_a_pipe_holds_arrives_whole_while_the_parent_was_busy() -> None:
    state = many_servers(200, 20, padding=200)  # several MB: the writer thread waits, the reading does not
    early = Prefetch(streaming(state, list(state.clients)))
    early.start(PROJECT)
    time.sleep(0.5)  # the parent is loading its manifests
    assert early.take(PROJECT, Recorder()) == state


def test_a_child_killed_after_some_parts_is_not_used_though_they_were_told() -> None:
    state = many_servers(4, 2)

    def killed(_project: str, listener: FetchListener) -> LiveState:
        listener.servers(state.servers, list(state.clients), complete=True)
        listener.clients("MS0", state.clients_of("MS0"))
        time.sleep(0.2)  # what was sent is written before the end
        os.kill(os.getpid(), signal.SIGKILL)
        return state

    early = Prefetch(killed)
    early.start(PROJECT)
    told = Recorder()
    assert early.take(PROJECT, told) is None
    assert [what for what, _ in told.told] == ["servers", "clients"]


def test_an_error_after_some_parts_is_raised_whole() -> None:
    state = many_servers(4, 2)
    error = Unauthorized("bad key", endpoint=CLIENT_ENDPOINTS.list, status=401, error_code="E1")

    def failing(_project: str, listener: FetchListener) -> LiveState:
        listener.servers(state.servers, list(state.clients), complete=True)
        listener.clients("MS0", state.clients_of("MS0"))
        raise error

    early = Prefetch(failing)
    early.start(PROJECT)
    with pytest.raises(Unauthorized) as raised:
        early.take(PROJECT, Recorder())
    assert vars(raised.value) == vars(error)


def test_arrivals_that_fail_stop_the_child_at_once_and_their_error_is_raised() -> None:
    state = many_servers(50, 1)
    early = Prefetch(streaming(state, list(state.clients), pause=1.0))  # 50 s, were it waited for
    early.start(PROJECT)
    pid = early._pid
    assert pid is not None
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="arrivals failed"):
        early.take(PROJECT, Recorder(fail_at=1))
    assert time.monotonic() - started < 10
    assert gone(pid)


def test_a_child_that_says_what_it_should_not_is_stopped_not_waited_for() -> None:
    state = many_servers(2, 1)

    def garbled(_project: str, listener: FetchListener) -> LiveState:
        listener.clients("MS0", state.clients_of("MS0"))  # before any servers
        time.sleep(60)
        return state

    early = Prefetch(garbled)
    early.start(PROJECT)
    pid = early._pid
    assert pid is not None
    started = time.monotonic()
    assert early.take(PROJECT, Recorder()) is None
    assert time.monotonic() - started < 10  # killed, not waited for
    assert gone(pid)


def test_it_is_off_when_asked_when_threads_run_or_when_stderr_is_not_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert allowed({PREFETCH_VARIABLE: "off"}) is False
    # pytest's own capture (and CliRunner) give stderr no file descriptor: the child's words would be lost
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert allowed({}) is False
    monkeypatch.undo()
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)):
        assert allowed({}) is False  # the emulator's thread


# --- the loader's hint ----------------------------------------------------------------------------


def test_the_loader_names_the_project_before_reading_the_other_files(write: Writer, tmp_path: Path) -> None:
    write("m/a-servers.yaml", "kind: MCPServer\nname: s\naudienceWhitelist: [https://s.example]\n")
    write("m/z-project.yaml", f"kind: Project\nprojectId: {PROJECT}\n")
    told: list[str] = []
    manifest = load_manifest([str(tmp_path / "m")], environ={}, on_project=told.append)
    assert told == [PROJECT]
    assert manifest.project.projectId == PROJECT


def test_the_loader_names_no_project_when_the_project_document_is_invalid(
    write: Writer, tmp_path: Path
) -> None:
    write("m/project.yaml", "kind: Project\nprojectId: 12\n")
    told: list[str] = []
    with pytest.raises(ManifestError):
        load_manifest([str(tmp_path / "m")], environ={}, on_project=told.append)
    assert told == []


def test_the_loader_reports_the_same_problems_in_the_same_order_either_way(
    write: Writer, tmp_path: Path
) -> None:
    write("m/a.yaml", "kind: MCPServer\nname: s\naudienceWhitelist: [nope]\n")
    write("m/b-project.yaml", f"kind: Project\nprojectId: {PROJECT}\nbogus: 1\n---\nkind: Nope\n")
    write("m/c.yaml", "kind: MCPServerClient\nname: c\nserver: missing\n")
    problems = []
    for on_project in (None, lambda _project: None):
        with pytest.raises(ManifestError) as raised:
            load_manifest([str(tmp_path / "m")], environ={}, on_project=on_project)
        problems.append(str(raised.value))
    assert problems[0] == problems[1]


# --- the command, as a user runs it -----------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as running:
        yield running


@pytest.fixture
def tree(write: Writer, tmp_path: Path) -> Path:
    write(
        "m/project.yaml",
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\nprune: true\n"
        "sinks:\n  local:\n    type: file\n    path: .secrets/c.json\n",
    )
    for n in range(12):
        write(
            f"m/servers/s{n:02}.yaml",
            f"kind: MCPServer\nname: s{n:02}\naudienceWhitelist: [https://s{n:02}.example]\n"
            "approvedScopes:\n  - name: read\n"
            f"---\nkind: MCPServerClient\nname: c\nserver: s{n:02}\nscopes: [read]\n",
        )
    return tmp_path / "m"


def command(
    emulator: RunningEmulator, *argv: str, prefetch: str = "auto", key: str = KEY
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DESCOPE_BASE_URL": emulator.base_url,
        "DESCOPE_MANAGEMENT_KEY": key,
        PREFETCH_VARIABLE: prefetch,
    }
    return subprocess.run(
        [str(SCRIPT), *argv], check=False, env=env, capture_output=True, text=True, timeout=120
    )


def seeded(emulator: RunningEmulator, tree: Path) -> None:
    """Half the servers live already, one of them changed, and one live server the manifests do not name."""
    done = command(emulator, "apply", str(tree), "--auto-approve")
    assert done.returncode == 0, done.stderr
    state = emulator.state()
    servers = state["servers"][:6]
    servers[0]["description"] = "changed by hand"
    extra = {**servers[1], "name": "extra", "id": "", "clients": []}
    extra.pop("id")
    emulator.reset()
    emulator.seed({"servers": [*servers, extra]})


@pytest.mark.parametrize("what", ["plan", "drift"])
def test_the_command_gives_the_same_answer_with_the_same_calls_either_way(
    emulator: RunningEmulator, tree: Path, what: str
) -> None:
    seeded(emulator, tree)
    answers, calls = [], []
    for prefetch in ("auto", "off"):
        emulator.reset(counters_only=True)
        done = command(emulator, "-v", what, str(tree), "--format", "json", prefetch=prefetch)
        assert done.returncode == 0, done.stderr
        said_ahead = (
            "while the manifests load" in done.stderr and "using the live project read" in done.stderr
        )
        assert said_ahead is (prefetch == "auto"), done.stderr
        answers.append(json.loads(done.stdout))
        calls.append(emulator.stats()["total"])
    assert answers[0] == answers[1]
    assert calls[0] == calls[1]
    assert answers[0]["summary"] != {key: 0 for key in answers[0]["summary"]}  # there is something to see


def test_an_api_error_reads_as_it_did_and_no_child_is_left(emulator: RunningEmulator, tree: Path) -> None:
    results = [
        command(emulator, "plan", str(tree), prefetch=p, key="K2-wrong-key-0000") for p in ("auto", "off")
    ]
    assert [r.returncode for r in results] == [1, 1]
    assert results[0].stderr == results[1].stderr
    assert "401" in results[0].stderr
    assert "Traceback" not in results[0].stderr
    assert "K2-wrong-key" not in results[0].stderr


def test_invalid_manifests_stop_the_reader_and_say_only_what_is_wrong(
    emulator: RunningEmulator, tree: Path
) -> None:
    (tree / "servers" / "s03.yaml").write_text("kind: MCPServer\nname: s03\naudienceWhitelist: [not-a-url]\n")
    results = [command(emulator, "plan", str(tree), prefetch=p) for p in ("auto", "off")]
    assert [r.returncode for r in results] == [1, 1]
    assert results[0].stderr == results[1].stderr
    assert "s03.yaml" in results[0].stderr


def test_a_plan_with_problems_fails_alike_either_way(emulator: RunningEmulator, tree: Path) -> None:
    """Planned as the live project arrives or after it is all read, the same problems, in the same order."""
    emulator.seed(
        {
            "servers": [  # servers of the manifests' names that mcp-reconciler does not own: conflicts
                {"name": f"s{n:02}", "audienceWhitelist": [f"https://s{n:02}.example"], "clients": []}
                for n in (7, 2, 9)
            ]
        }
    )
    results = [command(emulator, "plan", str(tree), prefetch=p) for p in ("auto", "off")]
    assert [r.returncode for r in results] == [1, 1]
    assert results[0].stderr == results[1].stderr
    assert results[0].stderr.count("not managed by mcp-reconciler") == 3, results[0].stderr
    assert "Traceback" not in results[0].stderr
