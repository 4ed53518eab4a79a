"""The secrets of one apply step reach a file sink in one write, and the journal records them with one
fsync, after that write is durable; a crash or a failing sink in the middle still loses nothing.

Before, each secret cost one whole rewrite of the sink file (quadratic in the number of secrets: a
first adoption of a large project delivers thousands) and some six fsyncs. Here an apply of N creates
writes the file once per step that issues secrets, and fsyncs a number of times that does not grow
with N. The crash tests kill ``apply`` (SIGKILL, from inside, at an exact point of the batched
delivery), then run it again: every secret ends in its sink, matching the emulator's, with no open
delivery left and no rotation.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from reconciler.cli import run
from reconciler.delivery import DELIVERY_ATTEMPTS
from reconciler.emulator import RunningEmulator
from reconciler.journal import Journal, open_deliveries, read_events
from reconciler.secret import Secret
from reconciler.sinks.base import (
    BatchingSink,
    SecretRecord,
    SinkError,
    Verification,
    deliver_many,
    env_name,
    verify_many,
)
from reconciler.sinks.file import FileSink
from tests.conftest import serving

KEY = "K2-apply-batching-key-7c41"
PROJECT = "P2APPLYBATCHING"
SERVERS = ("alpha", "beta", "gamma")
CLIENTS = 20  # per server
CREATES = len(SERVERS) * CLIENTS
# Both beside the Project file, in the manifests' folder m/ (the sink's path counts from there).
SINK = Path("m") / ".secrets" / "clients.json"
JOURNAL = Path("m") / ".mcp-reconciler" / "journal.jsonl"

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_RECONCILER_JOURNAL", raising=False)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def write_manifests(clients: int = CLIENTS, *, sink: Path = SINK, format: str = "json") -> list[str]:
    """``clients`` clients under each server (all new); the apply command for them."""
    folder = Path("m")
    folder.mkdir(exist_ok=True)
    (folder / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\n"
        f"sinks:\n  local: {{type: file, path: {sink.relative_to(folder)}, format: {format}}}\n"
    )
    for server in SERVERS:
        lines = [f"kind: MCPServer\nname: {server}\napprovedScopes: [{{name: read}}]\nclients:"]
        lines += [f"  - {{name: c{number:03}, scopes: [read]}}" for number in range(clients)]
        (folder / f"{server}.yaml").write_text("\n".join(lines) + "\n")
    return ["apply", str(folder), "--auto-approve"]


def live_secrets(emulator: RunningEmulator) -> dict[str, str]:
    """Every client's current secret in the emulator, by the key the manifests give it (server/client)."""
    return {
        f"{s['name']}/{c['name']}": c["secret"]
        for s in emulator.state()["servers"]
        for c in s.get("clients", [])
    }


def held_secrets(sink: Path = SINK, *, format: str = "json", keys: list[str] | None = None) -> dict[str, str]:
    """What the sink holds: by key (JSON), or for ``keys`` by their variable names (dotenv)."""
    if not sink.exists():
        return {}
    if format == "json":
        return {key: entry["clientSecret"] for key, entry in json.loads(sink.read_text()).items()}
    values = dotenv_values(sink, interpolate=False)
    return {key: str(values[env_name(key)]) for key in keys or [] if env_name(key) in values}


def events(journal: Path = JOURNAL) -> list[dict[str, Any]]:
    return list(read_events(journal))


def assert_no_secret_in(texts: list[str], secrets: dict[str, str]) -> None:
    leaked = sorted(key for key, value in secrets.items() if any(value in text for text in texts))
    assert leaked == [], f"the secrets of {leaked} appear in output"  # keys only, never values


# ---- observing the disk ---------------------------------------------------------------------------


@dataclass
class Disk:
    """os.fsync and os.replace calls, in order: fsync of which path (and, for the journal, how many
    ``delivered`` lines it held then), replace of which path and the size written."""

    steps: list[tuple[str, str, int]] = field(default_factory=list)

    def fsyncs(self) -> int:
        return sum(1 for op, _, _ in self.steps if op == "fsync")

    def writes_of(self, path: Path) -> list[int]:
        """The size of each whole-file write (an atomic replace) of ``path``."""
        target = os.path.realpath(path)
        return [size for op, where, size in self.steps if op == "replace" and where == target]

    def clear(self) -> None:
        self.steps.clear()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    seen = Disk()
    fsync, replace = os.fsync, os.replace
    journal = os.path.realpath(JOURNAL)

    def spy_fsync(fd: Any) -> None:
        descriptor = fd if isinstance(fd, int) else fd.fileno()
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        delivered = 0
        if path == journal:
            delivered = sum(1 for event in read_events(Path(path)) if event["event"] == "delivered")
        seen.steps.append(("fsync", path, delivered))
        fsync(descriptor)

    def spy_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        replace(src, dst, **kwargs)
        seen.steps.append(("replace", os.path.realpath(dst), os.stat(dst).st_size))

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    return seen


# ---- apply: one write per step, I/O linear in the number of secrets -------------------------------


@pytest.mark.parametrize("format", ["json", "dotenv"])
def test_the_secrets_of_a_step_reach_the_file_in_one_write_and_match_the_emulator(
    emulator: RunningEmulator,
    disk: Disk,
    format: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = SINK.with_suffix(".json" if format == "json" else ".env")
    apply = write_manifests(sink=sink, format=format)
    assert run(apply) == 0
    live = live_secrets(emulator)
    assert len(live) == CREATES
    assert held_secrets(sink, format=format, keys=list(live)) == live
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600
    # Servers first, then their clients: one step issued secrets, so the file was written once, and
    # the bytes written are the file's final size (not the sum of N growing rewrites).
    assert disk.writes_of(sink) == [sink.stat().st_size]
    first = disk.fsyncs()
    # A few per step and per run (journal group commits, the sink's temp file and folder), none per
    # secret: before, this apply of 60 creates made some 360 (6 per secret).
    assert first <= 20, disk.steps
    assert sum(1 for e in events() if e["event"] == "delivered") == CREATES

    # Twice as many new clients under the same servers (one step): one more write, no more fsyncs.
    disk.clear()
    apply = write_manifests(3 * CLIENTS, sink=sink, format=format)
    assert run(apply) == 0
    live = live_secrets(emulator)
    assert len(live) == 3 * CREATES
    assert held_secrets(sink, format=format, keys=list(live)) == live
    assert disk.writes_of(sink) == [sink.stat().st_size]
    assert disk.fsyncs() <= 10, disk.steps
    assert open_deliveries(JOURNAL, PROJECT) == []

    out, err = capsys.readouterr()
    assert f"{2 * CREATES} secrets delivered" in out
    assert_no_secret_in([out, err, caplog.text, JOURNAL.read_text()], live)


def test_delivered_is_journaled_once_for_the_batch_after_the_sink_is_durable(
    emulator: RunningEmulator, disk: Disk
) -> None:
    assert run(write_manifests()) == 0
    sink, folder = os.path.realpath(SINK), os.path.realpath(SINK.parent)
    journal = os.path.realpath(JOURNAL)
    replaced = next(i for i, (op, path, _) in enumerate(disk.steps) if op == "replace" and path == sink)
    folder_synced = next(
        i for i, (op, path, _) in enumerate(disk.steps) if i > replaced and (op, path) == ("fsync", folder)
    )
    journal_syncs = [(i, delivered) for i, (op, path, delivered) in enumerate(disk.steps) if path == journal]
    # One journal fsync took the journal from no "delivered" line to all of them ...
    counts = [delivered for _, delivered in journal_syncs]
    assert sorted(set(counts)) == [0, CREATES]
    first_with = next(i for i, delivered in journal_syncs if delivered)
    # ... and it came after the sink's file was renamed into place and its folder synced.
    assert replaced < folder_synced < first_with
    assert held_secrets() == live_secrets(emulator)


# ---- a failing sink: the whole batch undelivered, delivered by the next run ------------------------


def test_a_sink_failing_for_the_batch_leaves_every_secret_undelivered_and_the_next_run_delivers_them(
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    apply = write_manifests()
    writes: list[Path] = []

    def disk_full(path: Path, text: str, **options: Any) -> None:
        writes.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reconciler.sinks.file.write_atomically", disk_full)
        assert run(apply) == 3
    # The batch is one write per attempt, not one per secret.
    assert len(writes) == DELIVERY_ATTEMPTS
    _, err = capsys.readouterr()
    assert 'secret not delivered: client "alpha/c000": ' in err
    assert "No space left on device" in err
    assert f"{CREATES} secret(s) did not reach their sink" in err
    assert not SINK.exists()
    recorded = [e["event"] for e in events()]
    assert recorded.count("undelivered") == CREATES
    assert "delivered" not in recorded
    opened = open_deliveries(JOURNAL, PROJECT)
    assert len(opened) == CREATES
    assert {item.event for item in opened} == {"undelivered"}

    assert run(apply) == 0  # no change to make: the open deliveries are finished first
    live = live_secrets(emulator)
    assert len(live) == CREATES
    assert held_secrets() == live
    assert open_deliveries(JOURNAL, PROJECT) == []
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 0
    out, err = capsys.readouterr()
    assert_no_secret_in([out, err, caplog.text, JOURNAL.read_text()], live)


def test_open_deliveries_finished_by_the_next_run_reach_the_file_in_one_write(
    emulator: RunningEmulator, disk: Disk
) -> None:
    apply = write_manifests()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reconciler.sinks.file.write_atomically", _disk_full)
        assert run(apply) == 3
    assert len(open_deliveries(JOURNAL, PROJECT)) == CREATES

    disk.clear()
    assert run(apply) == 0
    # The 60 secrets the first run could not deliver go in one batch, as an apply step's do.
    assert disk.writes_of(SINK) == [SINK.stat().st_size]
    assert disk.fsyncs() <= 10, disk.steps
    assert held_secrets() == live_secrets(emulator)
    assert open_deliveries(JOURNAL, PROJECT) == []


def test_secrets_check_fix_delivers_every_missing_secret_in_one_write(
    emulator: RunningEmulator, disk: Disk, capsys: pytest.CaptureFixture[str]
) -> None:
    apply = write_manifests()
    assert run(apply) == 0
    SINK.unlink()
    capsys.readouterr()

    disk.clear()
    assert run(["secrets", "check", apply[1], "--fix"]) == 0
    assert disk.writes_of(SINK) == [SINK.stat().st_size]
    assert disk.fsyncs() <= 10, disk.steps
    assert held_secrets() == live_secrets(emulator)
    out, _ = capsys.readouterr()
    assert out.count("     fixed  client ") == CREATES, out
    assert f"{CREATES} of {CREATES} secrets are in their sinks" in out
    assert run(["secrets", "check", apply[1]]) == 0  # and a plain check agrees
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 0


def _disk_full(path: Path, text: str, **options: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


# ---- SIGKILL in the middle of a batched delivery ---------------------------------------------------

# The apply, killed (SIGKILL, by itself) at one point of the batch's delivery:
# - temp-synced: the batch's temp file is written and fsynced, not yet renamed over the sink;
# - renamed: the sink holds the batch, its folder is not synced and nothing is journaled yet;
# - before-delivered: the sink is durable, the journal's "delivered" lines are not written.
LAUNCH = """\
import os, signal, sys
from reconciler.journal import Journal
point, sink = sys.argv[1], os.path.realpath(sys.argv[2])
replace, write_many = os.replace, Journal.write_many

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def killing_replace(src, dst, **options):
    into_sink = os.path.realpath(dst) == sink
    if into_sink and point == "temp-synced":
        kill()
    replace(src, dst, **options)
    if into_sink and point == "renamed":
        kill()

def killing_write_many(self, events):
    events = list(events)
    if point == "before-delivered" and any(name == "delivered" for name, _ in events):
        kill()
    write_many(self, events)

os.replace, Journal.write_many = killing_replace, killing_write_many
from reconciler.cli import run
sys.exit(int(run(sys.argv[3:])))
"""


@pytest.mark.parametrize("point", ["temp-synced", "renamed", "before-delivered"])
def test_a_kill_in_the_middle_of_a_batched_delivery_loses_no_secret(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apply = write_manifests()
    log = tmp_path / "killed-run.log"
    with log.open("wb") as output:
        killed = subprocess.run(
            [sys.executable, "-c", LAUNCH, point, str(SINK), *apply],
            cwd=tmp_path,
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    assert killed.returncode == -signal.SIGKILL, log.read_text()
    live = live_secrets(emulator)
    assert len(live) == CREATES  # every client was created and its secret issued before the kill
    # Nothing was journaled delivered: every secret of the batch is an open delivery.
    assert "delivered" not in [e["event"] for e in events()]
    opened = open_deliveries(JOURNAL, PROJECT)
    assert len(opened) == CREATES
    assert {item.event for item in opened} == {"create-started"}
    assert held_secrets() == ({} if point == "temp-synced" else live)

    assert run(apply) == 0
    assert live_secrets(emulator) == live  # the same clients, the same secrets: nothing re-created
    assert held_secrets() == live
    assert open_deliveries(JOURNAL, PROJECT) == []
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 0
    assert run(["plan", apply[1], "--detailed-exitcode"]) == 0
    assert run(["secrets", "check", apply[1]]) == 0
    out, err = capsys.readouterr()
    assert_no_secret_in([out, err, log.read_text(), JOURNAL.read_text()], live)


# ---- the sink API: batches and their defaults -----------------------------------------------------

RECORDS = [SecretRecord("s", f"c{n}", f"cid-{n}", f"s/c{n}") for n in range(5)]
SECRETS = [Secret(f"batch-secret-{n}-0123456789abcdef") for n in range(5)]
DELIVERIES = list(zip(RECORDS, SECRETS, strict=True))


@pytest.mark.parametrize("format", ["json", "dotenv"])
def test_a_file_sink_batch_is_one_atomic_write(tmp_path: Path, disk: Disk, format: str) -> None:
    path = tmp_path / "secrets.out"
    path.write_text('{"kept": {"note": 1}}\n' if format == "json" else "# kept\nKEPT=1\n")
    sink = FileSink("local", path=path, format="json" if format == "json" else "dotenv")
    assert isinstance(sink, BatchingSink)
    assert deliver_many(sink, DELIVERIES) == [None] * len(DELIVERIES)
    assert len(disk.writes_of(path)) == 1
    assert verify_many(sink, DELIVERIES) == [Verification.MATCH] * len(DELIVERIES)
    assert ('"kept"' if format == "json" else "# kept\nKEPT=1\n") in path.read_text()  # nothing lost
    # Delivered again with one changed: replaced in place, still one write.
    changed = [*DELIVERIES[:4], (RECORDS[4], Secret("batch-secret-changed-0123456789"))]
    disk.clear()
    assert deliver_many(sink, changed) == [None] * len(changed)
    assert len(disk.writes_of(path)) == 1
    assert verify_many(sink, DELIVERIES)[4] is Verification.DIFFERENT
    assert sink.verify(*changed[4]) is Verification.MATCH


def test_a_batch_left_by_an_exception_writes_nothing_and_a_failed_write_fails_every_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.json"
    sink = FileSink("local", path=path)

    def failing_caller() -> None:
        with sink.batch():
            sink.deliver(*DELIVERIES[0])
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match="the caller failed"):
        failing_caller()
    assert not path.exists()

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("reconciler.sinks.file.write_atomically", disk_full)
    errors = deliver_many(sink, DELIVERIES)
    assert all(isinstance(error, SinkError) and "No space left" in str(error) for error in errors)
    assert not path.exists()
    assert verify_many(sink, DELIVERIES) == [Verification.MISSING] * len(DELIVERIES)


class OneByOne:
    """A sink without batches (as Vault, AWS, GitHub and command are): refuses one key."""

    name = "plain"

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    def check(self) -> None:
        pass

    def deliver(self, record: SecretRecord, secret: Secret) -> None:
        if record.key == "s/c2":
            raise SinkError("refused (simulated)")
        self.stored[record.key] = secret.reveal()

    def verify(self, record: SecretRecord, secret: Secret) -> Verification:
        if record.key not in self.stored:
            return Verification.MISSING
        return Verification.MATCH if self.stored[record.key] == secret.reveal() else Verification.DIFFERENT

    def close(self) -> None:
        pass


def test_a_sink_without_batches_gets_each_secret_by_itself() -> None:
    sink = OneByOne()
    assert not isinstance(sink, BatchingSink)
    errors = deliver_many(sink, DELIVERIES)
    assert [str(e) if e else None for e in errors] == [None, None, "refused (simulated)", None, None]
    assert sorted(sink.stored) == ["s/c0", "s/c1", "s/c3", "s/c4"]
    verified = verify_many(sink, DELIVERIES)
    assert verified[2] is Verification.MISSING
    assert [v for i, v in enumerate(verified) if i != 2] == [Verification.MATCH] * 4


# ---- the journal: group commit ---------------------------------------------------------------------


def test_concurrent_records_share_one_fsync_and_each_is_durable_when_it_returns(
    tmp_path: Path, disk: Disk
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, project="P1")
    disk.clear()
    synced_lines: list[int] = []

    async def announce(number: int) -> None:
        await journal.record("started", server="s", client=f"c{number}")
        synced_lines.append(len(path.read_text().splitlines()))  # on disk by now

    async def main() -> None:
        await asyncio.gather(*(announce(n) for n in range(50)))  # one turn of the loop: one fsync
        await announce(50)  # alone: its own fsync
        await announce(51)

    try:
        asyncio.run(main())
        journal.write_many([("delivered", {"server": "s", "client": f"c{n}"}) for n in range(10)])
    finally:
        journal.close()
    assert [op for op, _, _ in disk.steps] == ["fsync"] * 4
    assert synced_lines == [50] * 50 + [51, 52]
    assert len(path.read_text().splitlines()) == 62
