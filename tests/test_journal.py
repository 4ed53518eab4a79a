"""The journal: open deliveries per project, torn lines, safe permissions, clean errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import JournalError, ReconcilerError
from reconciler.journal import Journal, digest, open_deliveries, read_events
from reconciler.secret import Secret


def test_open_deliveries_are_per_project_and_closed_by_delivery(tmp_path: Path) -> None:
    path = tmp_path / "j" / "journal.jsonl"
    one, two = Journal(path, project="P1"), Journal(path, project="P2")
    one.write("create-started", server="s", client="a", sink="f", key="s/a")
    one.write("create-started", server="s", client="b", sink="f", key="s/b")
    two.write("create-started", server="s", client="a", sink="f", key="s/a")
    one.write("delivered", server="s", client="b", sink="f", key="s/b")
    one.close()
    two.close()
    with path.open("a") as stream:
        stream.write('{"event": "delivered", "project": "P1", "server": "s", "cli')  # a crash mid-write
    assert [(d.server, d.client) for d in open_deliveries(path, "P1")] == [("s", "a")]
    assert [(d.server, d.client) for d in open_deliveries(path, "P2")] == [("s", "a")]
    assert open_deliveries(path, "P3") == []
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_rotation_digest_tells_secrets_apart_without_holding_them() -> None:
    before, after = Secret("old-secret-value"), Secret("new-secret-value")
    assert digest(before, "salt") == digest(Secret("old-secret-value"), "salt")
    assert digest(before, "salt") != digest(after, "salt")
    assert digest(before, "salt") != digest(before, "pepper")
    assert "old-secret-value" not in digest(before, "salt")


# ---- a journal that cannot be used is a clean JournalError, raised before anything changes --------


def _refused(path: Path) -> str:
    with pytest.raises(JournalError) as caught:
        Journal(path, project="P1")
    assert isinstance(caught.value, ReconcilerError)  # the CLI reports it as "error: ..." with exit 1
    return str(caught.value)


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a journal\n")
    (tmp_path / "journal.jsonl").symlink_to(target)
    assert _refused(tmp_path / "journal.jsonl") == (
        f"the journal {tmp_path / 'journal.jsonl'} is a symbolic link; refusing to write the journal "
        "through it: point --journal at a regular file"
    )
    assert target.read_text() == "not a journal\n"


def test_a_dangling_symlink_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").symlink_to(tmp_path / "absent")
    assert "is a symbolic link" in _refused(tmp_path / "journal.jsonl")
    assert not (tmp_path / "absent").exists()


def test_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").mkdir()
    assert _refused(tmp_path / "journal.jsonl") == (
        f"the journal {tmp_path / 'journal.jsonl'} is a folder: point --journal at a file"
    )


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "journal.jsonl")
    assert _refused(tmp_path / "journal.jsonl") == (  # with no reader, opening it would wait forever
        f"the journal {tmp_path / 'journal.jsonl'} is not a regular file: point --journal at a file"
    )


def test_a_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    assert _refused(tmp_path / "state" / "journal.jsonl") == (
        f"cannot create the folder of the journal {tmp_path / 'state' / 'journal.jsonl'}: "
        f"{tmp_path / 'state'} is a file, not a folder: fix it or choose another path with --journal"
    )


def test_an_unwritable_journal_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text("")
    path.chmod(0o400)
    if os.geteuid() == 0:  # root writes anyway: make the open fail as it does for everyone else
        real_open = os.open

        def refusing(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(file) == path and flags & os.O_WRONLY:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr("reconciler.journal.os.open", refusing)
    assert _refused(path) == (
        f"cannot open the journal {path} for writing: Permission denied: fix its permissions or choose "
        "another path with --journal"
    )


def test_a_failed_write_is_a_journal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path / "journal.jsonl", project="P1")

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("reconciler.journal.os.fsync", full)
    with pytest.raises(JournalError, match=r"cannot write the journal .*: No space left on device"):
        journal.write("apply-started")
    monkeypatch.undo()
    journal.close()


def test_an_unreadable_journal_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").mkdir()
    with pytest.raises(JournalError, match="cannot read the journal"):
        open_deliveries(tmp_path / "journal.jsonl", "P1")


def test_a_line_torn_inside_a_character_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, project="P1")
    journal.write("create-started", server="s", client="é", sink="f", key="s/é")
    journal.close()
    whole = '{"event": "delivered", "project": "P1", "server": "s", "client": "é"}'.encode()
    with path.open("ab") as stream:
        stream.write(whole[: whole.index("é".encode()) + 1])  # a crash between the two bytes of é
    assert [(d.server, d.client) for d in open_deliveries(path, "P1")] == [("s", "é")]


def test_a_torn_last_line_is_ended_before_the_next_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"event": "apply-started", "project": "P"}\n{"event": "create-sta')
    journal = Journal(path, project="P")
    journal.write("apply-started")
    journal.close()
    events = [e["event"] for e in read_events(path)]
    assert events == ["apply-started", "apply-started"]  # the torn line is skipped, the new one kept
