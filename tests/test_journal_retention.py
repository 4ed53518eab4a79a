"""Journal retention: the journal keeps each project's last runs and every open delivery, is replaced
atomically (a SIGKILL leaves the old journal or the new one), and never loses an appended event."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.errors import UsageError
from reconciler.files import write_atomically
from reconciler.journal import Journal, open_deliveries, read_events
from reconciler.journal_retention import (
    DEFAULT_KEEP_RUNS,
    KEEP_RUNS_VARIABLE,
    compact,
    compact_quietly,
    keep_runs,
    retained,
)
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SinkError
from reconciler.sinks.file import FileSink
from tests.conftest import serving

KEY = "K2-journal-retention-key-2b7a"
PROJECT = "P2JOURNALRETENTION"
JOURNAL = Path(".mcp-reconciler") / "journal.jsonl"  # given as --journal: where it lives by default moves


def runs_of(path: Path, project: str) -> list[str]:
    return list(dict.fromkeys(str(e["run"]) for e in read_events(path) if e["project"] == project))


def write_runs(path: Path, project: str, count: int, *, prefix: str = "r") -> None:
    for number in range(count):
        journal = Journal(path, project=project, run_id=f"{prefix}{number:03d}")
        journal.write("apply-started", changes=1)
        journal.write("started", action="update", kind="server", server="s")
        journal.write("apply-finished", done=1, failed=0, skipped=0, undelivered=0)
        journal.close()


# ---- the bound -------------------------------------------------------------------------------------


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keep_runs({}) == DEFAULT_KEEP_RUNS
    assert keep_runs({KEEP_RUNS_VARIABLE: " 7 "}) == 7
    assert keep_runs({KEEP_RUNS_VARIABLE: "0"}) == 0
    for bad in ("-1", "x", "1.5", "99999999999"):
        with pytest.raises(UsageError, match=f"{KEEP_RUNS_VARIABLE}="):
            keep_runs({KEEP_RUNS_VARIABLE: bad})


def test_each_project_keeps_its_last_runs_and_every_open_delivery(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    old = Journal(path, project="P1", run_id="old")
    old.write("create-started", server="s", client="open", sink="f", key="s/open", serverId="S1")
    old.write("create-started", server="s", client="done", sink="f", key="s/done", serverId="S1")
    old.write("delivered", server="s", client="done", sink="f", key="s/done")
    old.write("rotate-started", server="s", client="rot", sink="f", key="s/rot", id="C3", rotation="m2")
    old.write("delivered", server="s", client="rot", sink="f", key="s/rot")  # marker not yet recorded
    old.close()
    write_runs(path, "P1", 5)
    write_runs(path, "P2", 2)  # another project's runs are counted on their own
    before = {project: open_deliveries(path, project) for project in ("P1", "P2")}
    assert len(before["P1"]) == 2

    result = compact(path, keep=3)
    assert result is not None
    assert result.dropped > 0
    assert runs_of(path, "P1") == ["old", "r002", "r003", "r004"]
    assert runs_of(path, "P2") == ["r000", "r001"]
    assert {project: open_deliveries(path, project) for project in ("P1", "P2")} == before
    kept = [e["client"] for e in read_events(path) if e["run"] == "old"]
    assert kept == ["open", "rot", "rot"]  # "done" closed: its events went with its run
    assert compact(path, keep=3) is None  # within the bound: left alone
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_random_journals_keep_their_open_deliveries(tmp_path: Path) -> None:
    """Random sequences of every event open_deliveries reads: compaction never changes its answer."""
    names = [
        "create-started", "rotate-started", "adopt-started", "undelivered", "delivered",
        "create-absent", "rotate-absent", "rotation-recorded", "abandoned", "started", "finished",
    ]  # fmt: skip
    chooser = random.Random(2026)  # noqa: S311 - a fixed seed, not a secret
    for trial in range(40):
        path = tmp_path / f"j{trial}.jsonl"
        for run_number in range(chooser.randint(2, 8)):
            journal = Journal(path, project=chooser.choice(["A", "B"]), run_id=f"run{run_number}")
            for _ in range(chooser.randint(1, 12)):
                event = chooser.choice(names)
                rotation = (
                    chooser.choice([None, "m1"]) if event in ("rotate-started", "undelivered") else None
                )
                journal.write(
                    event, server="s", client=chooser.choice("abc"), sink="f", key="k", rotation=rotation
                )
            journal.close()
        before = {p: open_deliveries(path, p) for p in ("A", "B")}
        compact(path, keep=chooser.randint(1, 3))
        assert {p: open_deliveries(path, p) for p in ("A", "B")} == before, trial


def test_a_torn_line_is_dropped_and_a_foreign_line_stops_the_compaction(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    write_runs(path, "P", 3)
    with path.open("a") as stream:
        stream.write('{"event": "create-sta')  # a crash mid-write
    write_runs(path, "P", 1, prefix="z")
    assert compact(path, keep=1) is not None
    assert '"create-sta' not in path.read_text()
    assert runs_of(path, "P") == ["z000"]
    with path.open("a") as stream:
        stream.write("[1, 2]\n")  # JSON, but no event: read_events refuses it, so is it left alone
    write_runs(path, "P", 2, prefix="y")
    text = path.read_text()
    assert compact_quietly(path, keep=1) is None
    assert path.read_text() == text


# ---- concurrent writers ----------------------------------------------------------------------------


def test_a_journal_open_in_a_run_is_not_compacted(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    write_runs(path, "P", 4)
    writing = Journal(path, project="P", run_id="now")  # holds its shared lock while open
    assert compact(path, keep=1) is None
    writing.write("apply-started", changes=0)
    writing.close()
    assert compact(path, keep=1) is not None
    assert runs_of(path, "P") == ["now"]


def test_an_event_appended_while_the_journal_is_replaced_lands_in_the_new_one(tmp_path: Path) -> None:
    """A writer that opens the journal while a compaction holds it waits, then appends to the new file."""
    path = tmp_path / "journal.jsonl"
    write_runs(path, "P", 2)
    descriptor = os.open(path, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # as compact() holds it
    appended = threading.Event()

    def writer() -> None:
        journal = Journal(path, project="P", run_id="late")
        journal.write("apply-started", changes=0)
        journal.close()
        appended.set()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    assert not appended.is_set()  # waiting for the compaction
    kept = "".join(line for line in path.read_text().splitlines(keepends=True) if "r001" in line)
    write_atomically(path, kept, mode=0o600)
    os.close(descriptor)
    thread.join(10)
    assert appended.is_set()
    assert runs_of(path, "P") == ["r001", "late"]


# ---- SIGKILL during a compaction -------------------------------------------------------------------

KILL = """\
import os, signal, sys
from pathlib import Path
from reconciler.journal_retention import compact
point, journal = sys.argv[1], os.path.realpath(sys.argv[2])
replace = os.replace

def killing_replace(src, dst, **options):
    into = os.path.realpath(dst) == journal
    if into and point == "before-rename":
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst, **options)
    if into and point == "after-rename":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = killing_replace
compact(Path(journal), keep=2)
"""


@pytest.mark.parametrize("point", ["before-rename", "after-rename"])
def test_a_kill_during_a_compaction_leaves_the_old_journal_or_the_new_one(tmp_path: Path, point: str) -> None:
    path = tmp_path / "journal.jsonl"
    opened = Journal(path, project="P", run_id="old")
    opened.write("create-started", server="s", client="a", sink="f", key="s/a")
    opened.close()
    write_runs(path, "P", 4)
    old = path.read_text()
    lines = [(line, json.loads(line)) for line in old.splitlines(keepends=True)]
    new = "".join(text for text, _ in retained(lines, keep=2))
    killed = subprocess.run(
        [sys.executable, "-c", KILL, point, str(path)],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert path.read_text() == (old if point == "before-rename" else new)
    assert open_deliveries(path, "P")[0].client == "a"
    leftovers = list(tmp_path.glob(".journal.jsonl.*.tmp"))
    assert len(leftovers) == (1 if point == "before-rename" else 0)
    write_runs(path, "P", 1, prefix="z")
    assert compact(path, keep=2) is not None  # and the next compaction clears the leftover
    assert list(tmp_path.glob(".journal.jsonl.*.tmp")) == []
    assert open_deliveries(path, "P")[0].client == "a"


# ---- through apply ---------------------------------------------------------------------------------


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def manifests() -> str:
    folder = Path("m")
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: f\n"
        f"sinks:\n  f: {{type: file, path: {Path.cwd() / 's.json'}}}\n"
    )
    (folder / "s.yaml").write_text(
        "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\nclients:\n  - {name: a, scopes: [r]}\n"
    )
    return str(folder)


def test_an_open_delivery_from_an_old_run_survives_compaction_and_the_next_run_delivers_it(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = manifests()

    def broken(_sink: FileSink, _record: SecretRecord, _secret: Secret) -> None:
        raise SinkError("disk full (simulated)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSink, "deliver", broken)
        assert run(["apply", folder, "--auto-approve", "--journal", str(JOURNAL)]) == 3
    first = runs_of(JOURNAL, PROJECT)
    write_runs(JOURNAL, PROJECT, 6)  # later runs of the project, touching nothing of this client
    opened = open_deliveries(JOURNAL, PROJECT)
    assert [item.client for item in opened] == ["a"]
    assert compact(JOURNAL, keep=2) is not None
    assert runs_of(JOURNAL, PROJECT) == [*first, "r004", "r005"]  # the old run: its open events only
    assert open_deliveries(JOURNAL, PROJECT) == opened

    monkeypatch.setenv(KEEP_RUNS_VARIABLE, "2")
    assert run(["apply", folder, "--auto-approve", "--journal", str(JOURNAL)]) == 0
    secret = emulator.state()["servers"][0]["clients"][0]["secret"]
    assert json.loads(Path("s.json").read_text())["s/a"]["clientSecret"] == secret
    assert open_deliveries(JOURNAL, PROJECT) == []
    assert len(runs_of(JOURNAL, PROJECT)) == 2  # compacted at the end of the apply: r005 and this run
    assert run(["secrets", "check", folder, "--journal", str(JOURNAL)]) == 0


def test_a_bad_setting_fails_the_apply_before_anything_changes(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEEP_RUNS_VARIABLE, "many")
    assert run(["apply", manifests(), "--auto-approve", "--journal", str(JOURNAL)]) == 1
    assert f"{KEEP_RUNS_VARIABLE}='many' is not a number of runs" in capsys.readouterr().err
    assert emulator.state()["servers"] == []
    assert not JOURNAL.exists()
