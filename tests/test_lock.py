"""One writer per project (reconciler.lock): two applies at once never create anything twice.

The concurrent trials run ``python -m reconciler apply`` twice at the same moment, as separate
processes, against an emulator slowed by latency so that the runs overlap; the figures (how each
trial ended, duplicates found) are printed (``-s``) and kept as the test's user properties.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.lock import Holder, LockError, LockHeld, LockSettings, ProjectLock, lock_directory, lock_name
from reconciler.manifest import load_manifest
from tests.conftest import EXAMPLES, serving

KEY = "K2-lock-test-key-7c21"
PROJECT = "P2MCPRECONCILERLOCK"
LATENCY_MS = 120  # long enough that two runs started together overlap, short enough for 5 trials
TRIALS = (0, 30, 0, 30, 0)  # --lock-timeout of both runs in each trial
HOST = socket.gethostname()


def expected_names() -> tuple[set[str], set[str]]:
    """The servers and server/client pairs the example manifests declare."""
    manifest = load_manifest([str(EXAMPLES)], environ={"MCP_VAR_SECRETS_DIR": "/nowhere"})
    servers = {s.name for s in manifest.servers}
    return servers, {f"{s.name}/{c.name}" for s in manifest.servers for c in s.clients}


def live_names(emulator: RunningEmulator) -> tuple[Counter[str], Counter[str]]:
    """How many live servers and clients bear each name: duplicates count more than once."""
    servers = emulator.state()["servers"]
    clients = Counter(f"{s['name']}/{c['name']}" for s in servers for c in s.get("clients", []))
    return Counter(s["name"] for s in servers), clients


def duplicates(emulator: RunningEmulator) -> list[str]:
    servers, clients = live_names(emulator)
    return sorted(name for name, count in (servers + clients).items() if count > 1)


def environment(emulator: RunningEmulator, work: Path, *, project: str = PROJECT) -> dict[str, str]:
    """What a subprocess needs: the emulator, the manifests' variables, a lock folder of the test's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DESCOPE_", "GITHUB_", "MCP_"))}
    return {
        **inherited,
        "DESCOPE_BASE_URL": emulator.base_url,
        "DESCOPE_MANAGEMENT_KEY": KEY,
        "DESCOPE_PROJECT_ID": project,
        "MCP_VAR_SECRETS_DIR": str(work / "secrets"),
        "MCP_RECONCILER_LOCK_DIR": str(work / "locks"),
        # Not the checkout's manifests/.mcp-reconciler (beside the examples' Project file): the test's.
        "MCP_RECONCILER_STATE_DIR": str(work / ".mcp-reconciler"),
    }


def start_apply(work: Path, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "reconciler", "apply", str(EXAMPLES), "--auto-approve", *options]
    return subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def slow_emulator() -> EmulatorConfig:
    return EmulatorConfig(project_id=PROJECT, management_key=KEY, latency_ms=LATENCY_MS)


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(slow_emulator()) as handle:
        yield handle


def holding(emulator: RunningEmulator, work: Path, project: str = PROJECT) -> ProjectLock:
    """The lock a run against ``emulator`` would take, taken by this test."""
    lock = ProjectLock(
        project, base_url=emulator.base_url, settings=LockSettings(work / "locks", command="test holder")
    )
    assert lock.try_acquire()
    return lock


# ---- two applies at once ------------------------------------------------------------------------


def test_two_applies_started_together_never_create_anything_twice(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    servers, clients = expected_names()
    outcomes: list[str] = []
    found: list[str] = []
    for trial, timeout in enumerate(TRIALS):
        work = tmp_path / f"trial-{trial}"
        work.mkdir()
        with running_emulator(slow_emulator()) as em:
            env = environment(em, work)
            runs = [start_apply(work, env, "--lock-timeout", str(timeout)) for _ in range(2)]
            results = [(p.pid, *p.communicate(timeout=60), p.wait()) for p in runs]
            found += duplicates(em)
            live_servers, live_clients = live_names(em)
            assert set(live_servers) == servers
            assert set(live_clients) == clients
        codes = sorted(code for *_, code in results)
        applied = [r for r in results if "Apply finished in" in r[1]]
        assert len(applied) == 1, results
        assert applied[0][3] == 0, applied[0][2]
        (other,) = [r for r in results if r is not applied[0]]
        _pid, stdout, stderr, code = other
        if code == 1:
            assert timeout == 0
            assert f"is locked by pid {applied[0][0]} on host {HOST}" in stderr, stderr
            assert "mcp-reconciler apply" in stderr
            outcomes.append("refused")
        else:
            assert code == 0, stderr
            assert "No changes. The project matches the manifests." in stdout
            waited = f"locked by pid {applied[0][0]} on host {HOST}" in stderr
            outcomes.append("waited, then nothing to do" if waited else "ran after, nothing to do")
        assert codes in ([0, 0], [0, 1])
    figures = f"{len(TRIALS)} trials: {dict(Counter(outcomes))}; duplicates found: {len(found)}"
    print(figures)
    record_property("concurrent_applies", figures)
    assert found == []
    # The runs did overlap: otherwise the trials would prove nothing about the lock.
    assert any(o != "ran after, nothing to do" for o in outcomes), outcomes


def test_a_second_apply_waits_for_the_lock_and_does_nothing_meanwhile(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    lock = holding(emulator, tmp_path)
    try:
        waiting = start_apply(tmp_path, environment(emulator, tmp_path), "--lock-timeout", "30")
        time.sleep(2.5)  # started, and waiting
        assert waiting.poll() is None
        assert emulator.requests() == []  # not even a read before the lock
    finally:
        lock.release()
    stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert f"The project is locked by pid {os.getpid()} on host {HOST}" in stderr
    assert "running `test holder`" in stderr
    assert "Apply finished in" in stdout
    assert duplicates(emulator) == []


def test_a_held_lock_refuses_at_once_by_default_naming_the_holder(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    lock = holding(emulator, tmp_path)
    try:
        started = time.monotonic()
        done = start_apply(tmp_path, environment(emulator, tmp_path))
        _stdout, stderr = done.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        lock.release()
    assert done.returncode == 1
    assert f"error: project {PROJECT} is locked by pid {os.getpid()} on host {HOST}" in stderr
    assert "not waiting (--lock-timeout 0)" in stderr
    assert elapsed < 10
    assert emulator.requests() == []
    assert not (tmp_path / ".mcp-reconciler" / "journal.jsonl").exists()  # not opened either


def test_a_sigkilled_holder_does_not_block_the_next_run(emulator: RunningEmulator, tmp_path: Path) -> None:
    env = environment(emulator, tmp_path)
    victim = start_apply(tmp_path, env)
    lock_file = tmp_path / "locks" / lock_name(PROJECT, base_url=emulator.base_url)
    deadline = time.monotonic() + 30
    while f'"pid": {victim.pid}' not in (lock_file.read_text() if lock_file.exists() else ""):
        assert victim.poll() is None, "the apply ended without taking the lock"
        assert time.monotonic() < deadline, "the apply never took the lock"
        time.sleep(0.02)
    time.sleep(0.3)  # into the apply
    assert victim.poll() is None
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert Holder.parse(lock_file.read_bytes()) is not None  # the file stays; the lock went with the process
    for _attempt in range(3):  # as after any crash, a re-run converges (tests/test_apply_crash.py)
        rerun = start_apply(tmp_path, env)  # --lock-timeout 0: refused at once if the lock were stale
        _stdout, stderr = rerun.communicate(timeout=60)
        assert "locked" not in stderr
        if rerun.returncode == 0:
            break
    assert rerun.returncode == 0, stderr
    assert duplicates(emulator) == []
    servers, clients = expected_names()
    assert (set(live_names(emulator)[0]), set(live_names(emulator)[1])) == (servers, clients)
    assert not lock_file.exists()  # removed by the run that released it


def test_a_lock_file_left_behind_is_not_a_lock(tmp_path: Path) -> None:
    """A holder killed with SIGKILL, at the level of the lock alone."""
    settings = LockSettings(tmp_path, command="victim")
    script = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from reconciler.lock import LockSettings, ProjectLock\n"
        "lock = ProjectLock('P2X', base_url='https://api.descope.com',\n"
        f"    settings=LockSettings(Path({str(tmp_path)!r})))\n"
        "asyncio.run(lock.acquire())\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    contender = ProjectLock("P2X", base_url="https://api.descope.com", settings=settings)
    assert not contender.try_acquire()
    assert contender.holder is not None
    assert contender.holder.pid == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert contender.try_acquire()
    contender.release()


# ---- the lock is per project, and every writer takes it ---------------------------------------------


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    """An emulator, the CLI's environment pointed at it, and the examples applied."""
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.setenv("MCP_VAR_SECRETS_DIR", str(tmp_path / "secrets"))
        monkeypatch.setenv("MCP_RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
        monkeypatch.setenv("MCP_RECONCILER_STATE_DIR", str(tmp_path / "state"))  # not the checkout's
        monkeypatch.chdir(tmp_path)
        assert run(["apply", str(EXAMPLES), "--auto-approve"]) == 0
        yield handle


def test_writers_take_the_lock_and_readers_do_not(
    applied: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", str(EXAMPLES), "--out", "plan.json"]) == 0
    capsys.readouterr()
    holder = f"is locked by pid {os.getpid()} on host {HOST}"
    lock = holding(applied, tmp_path)
    try:
        for writer in (
            ["apply", str(EXAMPLES), "--auto-approve"],
            ["apply", "plan.json", str(EXAMPLES)],
            ["secrets", "check", str(EXAMPLES), "--fix"],
        ):
            assert run(writer) == 1, writer
            assert holder in capsys.readouterr().err, writer
        for reader in (
            ["plan", str(EXAMPLES), "--detailed-exitcode"],
            ["drift", str(EXAMPLES), "--detailed-exitcode"],
            ["validate", str(EXAMPLES)],
            ["secrets", "check", str(EXAMPLES)],
            ["export", "--out", str(tmp_path / "exported")],
        ):
            assert run(reader) == 0, reader
            assert "locked" not in capsys.readouterr().err, reader
    finally:
        lock.release()
    assert run(["secrets", "check", str(EXAMPLES), "--fix"]) == 0
    assert run(["apply", "plan.json", str(EXAMPLES)]) == 0


def test_secrets_check_fix_waits_for_the_lock(applied: RunningEmulator, tmp_path: Path) -> None:
    lock = holding(applied, tmp_path)
    threading.Timer(0.5, lock.release).start()
    assert run(["secrets", "check", str(EXAMPLES), "--fix", "--lock-timeout", "20"]) == 0


def test_the_lock_is_per_project(applied: RunningEmulator, tmp_path: Path) -> None:
    other_project = holding(applied, tmp_path, project="P2SOMEOTHERPROJECT")
    try:
        with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as elsewhere:
            same_id_elsewhere = holding(elsewhere, tmp_path)  # another API: another project
            try:
                assert run(["apply", str(EXAMPLES), "--auto-approve"]) == 0
                assert run(["secrets", "check", str(EXAMPLES), "--fix"]) == 0
            finally:
                same_id_elsewhere.release()
    finally:
        other_project.release()


# ---- the lock itself --------------------------------------------------------------------------------


def test_names_follow_the_project_and_only_a_foreign_api() -> None:
    assert lock_name("P2abc", base_url="https://api.descope.com") == "P2abc.lock"
    assert lock_name("P2abc", base_url="https://api.euc1.descope.com/") == "P2abc.lock"
    assert lock_name("P2abc", base_url="https://DESCOPE.com") == "P2abc.lock"
    local = lock_name("P2abc", base_url="http://127.0.0.1:8765")
    assert local.startswith("P2abc@127.0.0.1_8765-")
    assert local.endswith(".lock")
    assert local != lock_name("P2abc", base_url="http://127.0.0.1:8766")
    assert "secret" not in lock_name("P2abc", base_url="https://user:secret@proxy.example:8443")
    assert lock_name("P2abc", base_url="https://descope.com.evil.example") != "P2abc.lock"
    for hostile in ("../../etc/passwd", "/abs", ".hidden", "a" * 300, "x/y"):
        name = lock_name(hostile, base_url="https://api.descope.com")
        assert "/" not in name
        assert not name.startswith(".")
        assert len(name) < 120
    assert lock_name("a/b", base_url="https://api.descope.com") != lock_name(
        "a_b", base_url="https://api.descope.com"
    )


def test_the_lock_folder_comes_from_the_environment(tmp_path: Path) -> None:
    assert lock_directory({"MCP_RECONCILER_LOCK_DIR": str(tmp_path)}) == tmp_path
    state = tmp_path / "state"
    assert lock_directory({"XDG_STATE_HOME": str(state)}) == state / "mcp-reconciler" / "locks"
    home = tmp_path / "home"
    expected = home / ".local" / "state" / "mcp-reconciler" / "locks"
    assert lock_directory({"XDG_STATE_HOME": "relative", "HOME": str(home)}) == expected
    assert lock_directory({"HOME": str(home)}) == expected


def test_the_holder_writes_who_it_is_into_a_private_file(tmp_path: Path) -> None:
    lock = ProjectLock(
        "P2X",
        base_url="https://api.descope.com",
        settings=LockSettings(tmp_path / "locks", command="mcp-reconciler apply"),
    )
    assert lock.try_acquire()
    try:
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        holder = Holder.parse(lock.path.read_bytes())
        assert holder is not None
        assert (holder.pid, holder.host, holder.command) == (os.getpid(), HOST, "mcp-reconciler apply")
        assert holder.since.endswith("Z")
    finally:
        lock.release()
    assert not lock.path.exists()


def test_a_symlink_at_the_lock_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "P2X.lock").symlink_to(target)
    lock = ProjectLock("P2X", base_url="https://api.descope.com", settings=LockSettings(tmp_path / "locks"))
    with pytest.raises(LockError, match="symbolic link"):
        asyncio.run(lock.acquire())
    assert target.read_text() == "keep me"


def test_a_wait_ends_at_the_timeout_and_says_so_once(tmp_path: Path) -> None:
    first = ProjectLock(
        "P2X", base_url="https://api.descope.com", settings=LockSettings(tmp_path, command="first")
    )
    assert first.try_acquire()
    told: list[Holder | None] = []
    second = ProjectLock(
        "P2X",
        base_url="https://api.descope.com",
        settings=LockSettings(tmp_path, timeout=0.3, on_wait=told.append),
    )
    started = time.monotonic()
    try:
        with pytest.raises(LockHeld, match=r"waited 0\.\d s \(--lock-timeout 0\.3\)") as raised:
            asyncio.run(second.acquire())
    finally:
        first.release()
    assert time.monotonic() - started >= 0.3
    assert [h.command if h else None for h in told] == ["first"]
    assert raised.value.holder is not None
    assert raised.value.holder.pid == os.getpid()
    asyncio.run(second.acquire())  # free now
    second.release()


def test_a_lock_taken_on_a_removed_file_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release removes the file while holding it. A waiter that opened the file before that gets
    its lock afterwards, on a file no longer at the path, while a third run locks the new file: the
    waiter must see it and try the new file, so that it and the third run are never both in."""
    settings = LockSettings(tmp_path)
    first = ProjectLock("P2X", base_url="https://api.descope.com", settings=settings)
    assert first.try_acquire()
    opened_early = os.open(first.path, os.O_RDWR)
    first.release()
    third = ProjectLock("P2X", base_url="https://api.descope.com", settings=settings)
    assert third.try_acquire()
    waiter = ProjectLock("P2X", base_url="https://api.descope.com", settings=settings)
    real_open = waiter._open_file
    early = [opened_early]
    monkeypatch.setattr(waiter, "_open_file", lambda: early.pop() if early else real_open())
    try:
        assert not waiter.try_acquire()
        assert waiter.holder is not None
        assert waiter.holder.pid == os.getpid()
    finally:
        third.release()
    assert early == []
    assert waiter.try_acquire()
    waiter.release()
