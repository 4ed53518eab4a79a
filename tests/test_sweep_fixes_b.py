"""Hostile journals, sink files, state files, live clients and demo manifests: clean errors, no crash."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.conftest import serving

KEY = "K2-sweep-b-key-4d1e"
PROJECT = "P2SWEEPB"
DEEP = "[" * 100_000


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def _manifests(folder: Path, project: str = PROJECT, *, server: bool = True) -> Path:
    (folder / "servers").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        f"kind: Project\nprojectId: {json.dumps(project, ensure_ascii=False)}\ndefaultSink: local\n"
        f"sinks:\n  local:\n    type: file\n    path: {folder.parent / 'secrets.json'}\n",
        encoding="utf-8",
    )
    if server:
        (folder / "servers" / "calendar.yaml").write_text(
            "kind: MCPServer\nname: calendar\nclients:\n  - name: bot\n", encoding="utf-8"
        )
    return folder


def _applied(tmp_path: Path) -> str:
    """Manifests whose client exists live, its secret delivered to tmp_path/secrets.json."""
    manifests = str(_manifests(tmp_path / "m"))
    assert run(["apply", manifests, "--auto-approve"]) == 0
    return manifests


def _clean_failure(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str, code: int = 1) -> str:
    assert run(argv) == code
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
    assert expected in captured.out + captured.err
    return captured.out + captured.err


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (DEEP, "it cannot be parsed"),
        ('{"event": ["x"], "project": "P2SWEEPB"}', '"event" is missing or not a string'),
        ('{"event": "create-started", "project": "P2SWEEPB"}', '"server" is missing or not a string'),
        (
            '{"event": "adopt-started", "project": "P2SWEEPB", "server": "calendar", "client": "bot", '
            '"sink": "local", "key": "calendar/bot", "rotation": {"a": 1}}',
            '"rotation" is not a string',
        ),
        ("[1]", "it is not a JSON object"),
    ],
)
def test_a_hostile_journal_line_is_a_journal_error_naming_its_line(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, problem: str
) -> None:
    journal = tmp_path / "journal.jsonl"
    torn = '{"event": "delivered", "proj'  # a torn write earlier on is still skipped
    journal.write_text(f"{torn}\n{line}\n", encoding="utf-8")
    argv = ["secrets", "check", str(_manifests(tmp_path / "m")), "--journal", str(journal)]
    err = _clean_failure(capsys, argv, f"the journal {journal}: line 2 is not a journal event: ")
    assert problem in err
    assert "move the journal away" in err


@pytest.mark.parametrize("content", [DEEP, '{"calendar/bot": ' + "9" * 5001 + "}"])
def test_a_file_sink_json_that_cannot_be_parsed_is_a_sink_error(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    manifests = _applied(tmp_path)
    (tmp_path / "secrets.json").write_text(content, encoding="utf-8")
    # secrets check reports a sink it cannot read on its line, and exits 3: not every secret is in place
    out = _clean_failure(capsys, ["secrets", "check", manifests], "is not a valid JSON file (it cannot be", 3)
    assert "9999" not in out


def test_a_lone_surrogate_in_a_file_sink_is_a_different_secret(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifests = _applied(tmp_path)
    (tmp_path / "secrets.json").write_text('{"calendar/bot": {"clientSecret": "\\ud800"}}', encoding="utf-8")
    capsys.readouterr()
    _clean_failure(capsys, ["secrets", "check", manifests], ' different  client "calendar/bot"', 3)


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


STATE_FILES = {
    "truncated": '{"version": 1, "servers": [',
    "a list": "[]",
    "another version": '{"version": 99, "servers": []}',
    "no servers": '{"version": 1}',
    "servers a string": '{"version": 1, "servers": "x"}',
    "server without id": '{"version": 1, "servers": [{"fields": {"name": "a"}, "clients": []}]}',
    "client without id": '{"version": 1, "servers": [{"fields": {"id": "S1"}, '
    '"clients": [{"fields": {}, "secret": "hidden-secret-1"}]}]}',
    "client without secret": '{"version": 1, "servers": [{"fields": {"id": "S1"}, '
    '"clients": [{"fields": {"id": "C1"}}]}]}',
    "deep": DEEP,
}


@pytest.mark.parametrize(
    "make",
    [
        *STATE_FILES,
        "not UTF-8",
        "/dev/null",
        "name too long",
        "fifo",
    ],
)
def test_an_unusable_state_file_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: str
) -> None:
    state = tmp_path / "state.json"
    if make in STATE_FILES:
        state.write_text(STATE_FILES[make], encoding="utf-8")
    elif make == "not UTF-8":
        state.write_bytes(b'{"version": 1, "servers": ["\xff\xfe hidden-secret-1"]}')
    elif make == "/dev/null":
        state = Path("/dev/null")
    elif make == "name too long":
        state = tmp_path / ("x" * 300)
    else:
        state = _fifo(tmp_path)
    argv = ["emulator", "--management-key", KEY, "--port", "0", "--state-file", str(state)]
    out = _clean_failure(capsys, argv, f"error: the state file {state} cannot be used: ")
    assert "hidden-secret-1" not in out


def test_a_port_in_use_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["emulator", "--management-key", KEY, "--port", str(port)]
        _clean_failure(capsys, argv, f"error: cannot listen on 127.0.0.1:{port}: ")


def test_a_live_client_without_a_name_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The emulator's API refuses a nameless client; its state file is how one gets in.
    clients = [{"fields": {"id": "C1", "clientId": "c1"}, "secret": "s1"}]
    clients.append({"fields": {"id": "C2", "clientId": "c2", "name": "bot"}, "secret": "s2"})
    state = {"version": 1, "servers": [{"fields": {"id": "S1", "name": "calendar"}, "clients": clients}]}
    (tmp_path / "state.json").write_text(json.dumps(state), encoding="utf-8")
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, state_file=tmp_path / "state.json")
    with running_emulator(config) as handle:
        for name, value in {"DESCOPE_BASE_URL": handle.base_url, "DESCOPE_MANAGEMENT_KEY": KEY}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        assert run(["export", "--out", "exported"]) == 0
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
    assert 'a client of server "calendar" (C1) is skipped: it has no name' in captured.err
    assert "name: bot" in (tmp_path / "exported" / "servers" / "calendar.yaml").read_text(encoding="utf-8")


def test_the_demo_needs_a_server(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifests = _manifests(tmp_path / "m", server=False)
    _clean_failure(
        capsys, ["demo", str(manifests)], "error: the demo needs at least one MCPServer in the manifests"
    )


@pytest.mark.parametrize("project", ["P2Xé", "P2:X"])
def test_the_demo_needs_a_plain_project_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, project: str
) -> None:
    _clean_failure(
        capsys,
        ["demo", str(_manifests(tmp_path / "m", project))],
        "error: the demo needs a projectId of plain ASCII letters and digits",
    )
