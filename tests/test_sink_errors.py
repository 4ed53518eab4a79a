"""Bad sinks and journals end in a clean error, never in "internal error": a file sink whose path is a
folder, a journal that is a symlink, a folder or not writable, a sink whose library is not installed;
and SinkError and JournalError belong to the one error tree the CLI reports."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import reconciler.sinks.base
from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.errors import ExitCode, JournalError, ReconcilerError, SinkError
from tests.conftest import serving

PROJECT_ID = "P2MCPRECONCILERDEMO"
KEY = "K2-sink-errors-key-5c1e"
SERVER = "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\nclients:\n  - {name: a, scopes: [r]}\n"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT_ID, KEY) as handle:
        monkeypatch.chdir(tmp_path)
        yield handle


def _manifests(tmp_path: Path, sink: str) -> Path:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT_ID}\ndefaultSink: local\nsinks:\n  local: {sink}\n"
    )
    (folder / "s.yaml").write_text(SERVER)
    return folder


def _clean(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out, err = capsys.readouterr()
    for text in (out, err):
        assert "internal error" not in text
        assert "Traceback" not in text
    return out, err


def _clients(emulator: RunningEmulator) -> list[str]:
    return [f"{s['name']}/{c['name']}" for s in emulator.state()["servers"] for c in s.get("clients", [])]


def _events(path: Path) -> list[str]:
    return [json.loads(line)["event"] for line in path.read_text().splitlines()] if path.exists() else []


# ---- a file sink whose path is a folder --------------------------------------------------------


def test_a_file_sink_on_a_folder_is_warned_about_skipped_and_reported(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    manifests = _manifests(tmp_path, f"{{type: file, path: {folder}}}")
    problem = f"sink 'local' (file): {folder} is a folder, not a file: point path at a file inside it"

    assert run(["plan", str(manifests)]) == ExitCode.OK
    out, _ = _clean(capsys)  # the text plan says it beside the change it stops
    assert f"! the sink cannot take it: {problem}; apply will not create it" in out
    assert run(["plan", str(manifests), "--format", "json"]) == ExitCode.OK
    _, err = _clean(capsys)
    assert f"warning: {problem} (apply will not create or rotate clients whose secrets go there)" in err

    assert run(["apply", str(manifests), "--auto-approve"]) == ExitCode.ERROR
    _, err = _clean(capsys)
    assert f"skipped: create client \"s/a\": sink 'local' is not usable: {problem}" in err
    assert err.endswith("error: 0 change(s) failed and 1 were skipped\n")
    assert _clients(emulator) == []  # no client was made whose secret had nowhere to go
    assert "create-started" not in _events(tmp_path / "m" / ".mcp-reconciler" / "journal.jsonl")
    assert list(folder.iterdir()) == []

    # Once the client exists (its secret in a real file), secrets check reports the folder per client.
    good = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'good.json'}}}")
    assert run(["apply", str(good), "--auto-approve"]) == ExitCode.OK
    _manifests(tmp_path, f"{{type: file, path: {folder}}}")
    capsys.readouterr()
    assert run(["secrets", "check", str(manifests)]) == ExitCode.SECRET_UNDELIVERED
    out, err = _clean(capsys)
    assert f'     error  client "s/a" -> sink local ({folder}): {problem}' in out
    assert err == "error: 1 secret(s) are not in their sinks; run with --fix to deliver them\n"


# ---- the journal -------------------------------------------------------------------------------


def _symlink(tmp_path: Path) -> tuple[Path, str]:
    target = tmp_path / "target.txt"
    target.write_text("kept\n")
    (tmp_path / "journal.jsonl").symlink_to(target)
    return tmp_path / "journal.jsonl", "is a symbolic link; refusing to write the journal through it"


def _parent_is_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "state").write_text("")
    return tmp_path / "state" / "journal.jsonl", f"{tmp_path / 'state'} is a file, not a folder"


def _fifo(tmp_path: Path) -> tuple[Path, str]:
    os.mkfifo(tmp_path / "journal.jsonl")
    return tmp_path / "journal.jsonl", "is not a regular file"


@pytest.mark.parametrize("broken", [_symlink, _parent_is_a_file, _fifo])
@pytest.mark.parametrize(
    "command", [["apply", "--auto-approve"], ["secrets", "check"], ["secrets", "check", "--fix"]]
)
def test_an_unusable_journal_is_a_clean_error_before_anything_changes(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    broken: Any,
    command: list[str],
) -> None:
    manifests = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'out.json'}}}")
    journal, reason = broken(tmp_path)
    assert run([*command, str(manifests), "--journal", str(journal)]) == ExitCode.ERROR
    out, err = _clean(capsys)
    assert out == ""
    assert err.startswith("error: ")
    assert reason in err
    assert err.count("\n") == 1
    assert emulator.state()["servers"] == []
    assert not (tmp_path / "out.json").exists()


def test_an_unwritable_journal_is_a_clean_error(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text("")
    journal.chmod(0o400)
    real_open = os.open

    def refusing(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(file) == journal and flags & os.O_WRONLY:  # as for anyone but root
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr("reconciler.journal.os.open", refusing)
    manifests = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'out.json'}}}")
    assert run(["apply", str(manifests), "--auto-approve", "--journal", str(journal)]) == ExitCode.ERROR
    _, err = _clean(capsys)
    assert err == (
        f"error: cannot open the journal {journal} for writing: Permission denied: fix its permissions or "
        "choose another path with --journal\n"
    )
    assert emulator.state()["servers"] == []


def test_a_journal_folder_is_refused_by_the_option_and_by_the_default_path(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'out.json'}}}")
    (tmp_path / "j").mkdir()
    assert (
        run(["apply", str(manifests), "--auto-approve", "--journal", str(tmp_path / "j")]) == ExitCode.ERROR
    )
    _, err = _clean(capsys)
    assert "is a directory" in err
    (manifests / ".mcp-reconciler" / "journal.jsonl").mkdir(parents=True)  # beside the Project file
    assert run(["apply", str(manifests), "--auto-approve"]) == ExitCode.ERROR
    _, err = _clean(capsys)
    # The default is found once the manifests are read (not by click): the journal's own words.
    assert f"the journal {manifests / '.mcp-reconciler' / 'journal.jsonl'} is a folder" in err
    assert emulator.state()["servers"] == []


# ---- a sink whose library is not installed -----------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """A sink type whose library is made to look uninstalled."""

    sink: str  # the sink's settings
    library: str  # the top-level module of the library
    module: str  # the sink's own module, which imports it
    problem: str  # what every command says about it

    def uninstall(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make ``import library`` (and of any loaded part of it) fail as if it were not installed."""
        for part in [self.library, *(m for m in list(sys.modules) if m.startswith(f"{self.library}."))]:
            monkeypatch.setitem(sys.modules, part, None)
        monkeypatch.delitem(sys.modules, self.module, raising=False)


MISSING = [
    pytest.param(
        Missing(
            "{type: vault, url: 'http://127.0.0.1:9'}",
            "hvac",
            "reconciler.sinks.vault",
            "sink 'local' (vault) needs the hvac package: pip install 'mcp-reconciler[vault]'",
        ),
        id="vault",
    ),
    pytest.param(
        Missing(
            "{type: aws-secrets-manager, region: eu-west-1}",
            "boto3",
            "reconciler.sinks.aws",
            "sink 'local' (aws-secrets-manager) needs the boto3 package: pip install 'mcp-reconciler[aws]'",
        ),
        id="aws",
    ),
    pytest.param(
        Missing(
            "{type: github, repository: acme/agents}",
            "nacl",
            "reconciler.sinks.github",
            "sink 'local' (github) needs the pynacl package: pip install 'mcp-reconciler[github]'",
        ),
        id="github",
    ),
]


@pytest.mark.parametrize("missing", MISSING)
def test_a_missing_library_is_warned_about_by_plan_and_skipped_by_apply(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    missing: Missing,
) -> None:
    missing.uninstall(monkeypatch)
    manifests = _manifests(tmp_path, missing.sink)
    assert run(["validate", str(manifests)]) == ExitCode.OK  # offline: nothing is imported
    assert run(["plan", str(manifests)]) == ExitCode.OK
    out, _ = _clean(capsys)  # the text plan says it beside the change it stops
    assert f"! the sink cannot take it: {missing.problem}; apply will not create it" in out
    assert run(["plan", str(manifests), "--format", "markdown"]) == ExitCode.OK
    _, err = _clean(capsys)
    assert (
        f"warning: {missing.problem} (apply will not create or rotate clients whose secrets go there)" in err
    )

    assert run(["apply", str(manifests), "--auto-approve"]) == ExitCode.ERROR
    out, err = _clean(capsys)
    assert f"skipped: create client \"s/a\": sink 'local' is not usable: {missing.problem}" in err
    assert "1 created, 0 updated" in out  # the server, which needs no secret
    assert err.endswith("error: 0 change(s) failed and 1 were skipped\n")
    assert _clients(emulator) == []
    assert "create-started" not in _events(tmp_path / "m" / ".mcp-reconciler" / "journal.jsonl")


@pytest.mark.parametrize("missing", MISSING)
def test_a_missing_library_is_reported_by_secrets_check(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    missing: Missing,
) -> None:
    manifests = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'out.json'}}}")
    assert run(["apply", str(manifests), "--auto-approve"]) == ExitCode.OK
    delivered = (tmp_path / "out.json").read_text()
    _manifests(tmp_path, missing.sink)  # the secrets move to a sink this installation cannot use
    missing.uninstall(monkeypatch)
    capsys.readouterr()
    for fix in ([], ["--fix"]):
        assert run(["secrets", "check", str(manifests), *fix]) == ExitCode.SECRET_UNDELIVERED
        out, err = _clean(capsys)
        assert f'     error  client "s/a" -> sink local: {missing.problem}' in out
        assert "0 of 1 secrets are in their sinks" in out
        assert err.startswith("error: 1 secret(s) are not in their sinks")
    assert (tmp_path / "out.json").read_text() == delivered
    assert _clients(emulator) == ["s/a"]


# ---- one error tree ----------------------------------------------------------------------------


def test_sink_and_journal_errors_belong_to_the_error_tree() -> None:
    assert reconciler.sinks.base.SinkError is SinkError
    assert issubclass(SinkError, ReconcilerError)
    assert issubclass(JournalError, ReconcilerError)
    assert SinkError("x").exit_code == JournalError("x").exit_code == ExitCode.ERROR


def test_a_sink_error_that_reaches_the_cli_is_a_clean_error(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(*_args: object) -> dict[str, object]:
        raise SinkError("sink 'local': invalid settings: path: Field required")

    monkeypatch.setattr("reconciler.workflow.build_sinks", failing)
    manifests = _manifests(tmp_path, f"{{type: file, path: {tmp_path / 'out.json'}}}")
    for command in (["apply", "--auto-approve"], ["secrets", "check"]):
        assert run([*command, str(manifests)]) == ExitCode.ERROR
        _, err = _clean(capsys)
        assert err == "error: sink 'local': invalid settings: path: Field required\n"
    assert emulator.state()["servers"] == []
