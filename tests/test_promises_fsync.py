"""Promises of durability: every fsync the reconciler relies on, and its order, observed.

A crash between two system calls cannot be staged in-process, so ``os.fsync``, ``os.replace`` and
``os.rename`` are spied on: each call is recorded in order with the path behind the descriptor
(``/proc/self/fd``) and a digest of what the file held when it was synced. The promises:

- an atomic write (``files.write_atomically``, which the file sink uses too) fsyncs the temp file,
  holding the whole new content with its final mode, before renaming it over the target, and fsyncs
  the folder after the rename; the file sink fails a delivery whose folder cannot be synced;
- the journal fsyncs each event before ``write`` returns, so the step it announces comes after it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.files import write_atomically
from reconciler.journal import Journal
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SinkError
from reconciler.sinks.file import FileSink
from tests.conftest import project_yaml, serving

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")


@dataclass(frozen=True)
class Step:
    """One recorded call: ``fsync`` of ``path``, ``replace`` of ``path`` by ``source``, or a ``post``."""

    op: str
    path: str
    source: str = ""
    digest: str = ""  # sha256 of the file's bytes when it was synced; "" for a folder
    mode: int = field(default=0, compare=False)  # the file's permission bits when it was synced
    content: bytes = field(default=b"", repr=False, compare=False)  # may hold a secret: never shown


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def real(path: Path | str) -> str:
    return os.path.realpath(path)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[Step]:
    """os.fsync, os.replace and os.rename, recorded in the order they are called (any thread)."""
    recorded: list[Step] = []
    fsync, replace, rename = os.fsync, os.replace, os.rename

    def spy_fsync(fd: Any) -> None:
        descriptor = fd if isinstance(fd, int) else fd.fileno()
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            content = Path(path).read_bytes()  # what a crash right after the fsync would leave
            mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
            recorded.append(Step("fsync", path, digest=digest(content), content=content, mode=mode))
        else:
            recorded.append(Step("fsync", path))
        fsync(descriptor)

    def spy_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        recorded.append(Step("replace", real(dst), source=real(src)))
        replace(src, dst, **kwargs)

    def spy_rename(src: Any, dst: Any, **kwargs: Any) -> None:
        recorded.append(Step("replace", real(dst), source=real(src)))
        rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(os, "rename", spy_rename)
    return recorded


def assert_atomic_write(recorded: list[Step], target: Path) -> None:
    """Exactly: fsync(temp, full new content), replace(target by temp), fsync(target's folder)."""
    assert [s.op for s in recorded] == ["fsync", "replace", "fsync"], recorded
    synced, renamed, folder = recorded
    temp = synced.path
    assert Path(temp).parent == Path(real(target)).parent
    assert temp != real(target)
    assert not Path(temp).exists()  # it became the target
    assert synced.digest == digest(target.read_bytes())  # synced whole, before the rename
    assert synced.mode == stat.S_IMODE(target.stat().st_mode)  # with its mode, whatever the umask
    assert renamed == Step("replace", real(target), source=temp)
    assert folder == Step("fsync", real(target.parent))


# ---- files.write_atomically -----------------------------------------------------------------------


def test_write_atomically_syncs_the_whole_temp_file_then_renames_then_syncs_the_folder(
    tmp_path: Path, steps: list[Step]
) -> None:
    target = tmp_path / "out" / "plan.json"
    target.parent.mkdir()
    target.write_text("the old plan")
    write_atomically(target, '{"new": "plan"}\n' * 1000, mode=0o644)
    assert target.read_text() == '{"new": "plan"}\n' * 1000
    assert_atomic_write(steps, target)


def test_write_atomically_syncs_a_new_file_and_its_new_folder(tmp_path: Path, steps: list[Step]) -> None:
    target = tmp_path / "made" / "on" / "demand.md"
    write_atomically(target, "# new\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert_atomic_write(steps, target)


def test_write_atomically_gives_the_mode_whatever_the_umask(tmp_path: Path, steps: list[Step]) -> None:
    target = tmp_path / "plan.json"
    previous = os.umask(0o077)
    try:
        write_atomically(target, "{}\n", mode=0o644)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert_atomic_write(steps, target)


# ---- the file sink --------------------------------------------------------------------------------

RECORD = SecretRecord(server="calendar", client="agent", client_id="cid-1", key="calendar/agent")
OTHER = SecretRecord(server="calendar", client="bot", client_id="cid-2", key="calendar/bot")


@pytest.mark.parametrize("format", ["json", "dotenv"])
def test_the_file_sink_syncs_the_temp_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, steps: list[Step], format: str
) -> None:
    target = tmp_path / "secrets" / ("clients.json" if format == "json" else "clients.env")
    sink = FileSink("local", path=target, format="json" if format == "json" else "dotenv")
    sink.deliver(RECORD, Secret("fsync-promise-secret-one-0001"))
    assert_atomic_write(steps, target)
    steps.clear()
    sink.deliver(OTHER, Secret("fsync-promise-secret-two-0002"))  # over an existing file
    assert_atomic_write(steps, target)
    assert b"fsync-promise-secret-one-0001" in target.read_bytes()


def test_a_folder_that_cannot_be_synced_fails_a_delivery_but_not_a_plain_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsyncable(folder: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("reconciler.files.fsync_folder", unsyncable)
    write_atomically(tmp_path / "plan.json", "{}\n", mode=0o644)  # a plan or export: the rename stands
    assert (tmp_path / "plan.json").read_text() == "{}\n"
    sink = FileSink("local", path=tmp_path / "clients.json")
    # A delivery is journaled as done when deliver returns: not before the rename is durable.
    with pytest.raises(SinkError, match=r"cannot write .*clients\.json: Input/output error"):
        sink.deliver(RECORD, Secret("fsync-promise-secret-three-0003"))


# ---- the journal ----------------------------------------------------------------------------------


def test_each_journal_event_is_synced_before_write_returns(tmp_path: Path, steps: list[Step]) -> None:
    path = tmp_path / "state" / "journal.jsonl"
    journal = Journal(path, project="P2FSYNC")
    # A new journal's name is made durable first: its folder is synced once, when the file is created.
    assert steps == [Step("fsync", real(path.parent))]
    steps.clear()
    names = ["apply-started", "create-started", "delivered", "apply-finished"]
    try:
        for count, name in enumerate(names, start=1):
            journal.write(name, server="calendar", client="agent")
            assert len(steps) == count, steps  # one fsync per event, done when write returns
            assert steps[-1] == Step("fsync", real(path), digest=digest(path.read_bytes()))
            lines = steps[-1].content.decode().splitlines()
            assert [json.loads(line)["event"] for line in lines] == names[:count]
    finally:
        journal.close()


# ---- through apply: each step after the journal event announcing it is on disk --------------------

PROJECT = "P2FSYNCAPPLY"
KEY = "K2-fsync-promises-management-key-9d2"
PROJECT_YAML = project_yaml(PROJECT)
SERVER_YAML = """\
kind: MCPServer
name: calendar
description: Calendar tools
approvedScopes:
  - name: calendar:read
clients:
  - name: ci-agent
    scopes: [calendar:read]
"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "project.yaml").write_text(PROJECT_YAML)
    (tmp_path / "manifests" / "calendar.yaml").write_text(SERVER_YAML)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _journal_events(step: Step) -> list[str]:
    return [json.loads(line)["event"] for line in step.content.decode().splitlines()]


def test_apply_announces_each_step_on_disk_before_taking_it(
    emulator: RunningEmulator, tmp_path: Path, steps: list[Step], monkeypatch: pytest.MonkeyPatch
) -> None:
    send = httpx.AsyncClient.send

    async def recorded_send(
        self: httpx.AsyncClient, request: httpx.Request, **options: Any
    ) -> httpx.Response:
        steps.append(Step("post", request.url.path))  # as the request leaves, whatever API call sends it
        return await send(self, request, **options)

    monkeypatch.setattr(httpx.AsyncClient, "send", recorded_send)
    assert run(["apply", "manifests", "--auto-approve"]) == 0

    journal = tmp_path / "manifests" / ".mcp-reconciler" / "journal.jsonl"  # beside the Project file
    secrets = tmp_path / "manifests" / ".secrets" / "clients.json"
    synced = [s for s in steps if s.op == "fsync" and s.path == real(journal)]
    lines = journal.read_bytes().splitlines(keepends=True)
    # Every event was synced by itself, in order: the k-th sync held exactly the first k lines.
    assert [s.digest for s in synced] == [digest(b"".join(lines[: k + 1])) for k in range(len(lines))]

    def journal_before(index: int) -> list[str]:
        """The journal's events as last synced before steps[index]."""
        return _journal_events([s for s in steps[:index] if s in synced][-1])

    creates = [i for i, s in enumerate(steps) if s.op == "post" and s.path.endswith("server/client/create")]
    assert len(creates) == 1
    assert journal_before(creates[0])[-1] == "create-started"  # a crash now leaves the create announced

    # The secret file is written atomically, and "delivered" is journaled only once it is durable.
    stored = [i for i, s in enumerate(steps) if s.op == "replace" and s.path == real(secrets)]
    assert len(stored) == 1
    at = stored[0]
    temp_synced = [i for i, s in enumerate(steps) if s.op == "fsync" and s.path == steps[at].source]
    assert len(temp_synced) == 1
    assert temp_synced[0] < at
    assert steps[temp_synced[0]].digest == digest(secrets.read_bytes())
    folder_synced = next(
        i for i, s in enumerate(steps) if i > at and s == Step("fsync", real(secrets.parent))
    )
    delivered = next(i for i, s in enumerate(steps) if s in synced and _journal_events(s)[-1] == "delivered")
    assert at < folder_synced < delivered
    assert "delivered" not in journal_before(at)
