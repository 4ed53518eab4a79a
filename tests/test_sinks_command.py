"""The command sink, running real programs: the secret on stdin only, metadata in a minimal environment."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ManifestError
from reconciler.manifest import load_manifest
from reconciler.secret import Secret
from reconciler.sinks import build_sinks
from reconciler.sinks.base import SecretRecord, Verification
from reconciler.sinks.command import CommandSink
from tests.conftest import Writer
from tests.sink_servers import expect_sink_error, logged

CANARY = "canary-C0mmand-5ecret-4d21"
SECRET = Secret(CANARY)
RECORD = SecretRecord(
    server="calendar", client="claude-desktop", client_id="cid-1", key="calendar/claude-desktop"
)

STORE = """\
import json, os, sys
report = {"stdin": sys.stdin.read(), "argv": sys.argv, "env": dict(os.environ)}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
"""
ECHO_AND_FAIL = """\
import sys
value = sys.stdin.read()
print("got", value)
print("got", value, file=sys.stderr)
sys.exit(3)
"""
HANG = """\
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1], "w") as out:
    out.write(str(child.pid))
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def _no_leak(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in logged(caplog)
    out, err = capfd.readouterr()
    assert CANARY not in out + err  # the program's output went nowhere


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o700)
    return path


def command_sink(
    argv: list[str],
    environ: dict[str, str] | None = None,
    timeout: float = 30,
    env: list[str] | None = None,
) -> CommandSink:
    settings: dict[str, Any] = {"type": "command", "command": argv, "timeoutSeconds": timeout}
    if env is not None:
        settings["env"] = env
    sink = build_sinks({"hook": settings}, environ or {"PATH": os.environ["PATH"]})["hook"]
    assert isinstance(sink, CommandSink)
    return sink


def test_the_secret_arrives_on_stdin_and_nowhere_else(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    program = script(tmp_path, "store", STORE)
    sink = command_sink([str(program), str(report_path)], {"PATH": os.environ["PATH"], "INHERITED": "yes"})
    sink.check()
    sink.deliver(RECORD, SECRET)
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["stdin"] == CANARY + "\n"
    assert CANARY not in json.dumps(report["argv"])
    assert CANARY not in json.dumps(report["env"])
    assert report["argv"] == [str(program), str(report_path)]
    env = report["env"]
    assert (env["MCP_SERVER"], env["MCP_CLIENT_NAME"], env["MCP_CLIENT_ID"], env["MCP_SECRET_KEY"]) == (
        "calendar",
        "claude-desktop",
        "cid-1",
        "calendar/claude-desktop",
    )
    assert "INHERITED" not in env  # not listed in env: not passed
    assert sink.verify(RECORD, SECRET) is Verification.UNREADABLE


# What mcp-reconciler's own environment may hold that no command should see unless it asks.
CONFIDENTIAL = {
    "DESCOPE_MANAGEMENT_KEY": "K-management-7f3a",
    "MCP_RECONCILER_PLAN_KEY": "plan-key-19c2",
    "GITHUB_TOKEN": "ghp_notreal0000",
    "VAULT_TOKEN": "hvs.notreal",
    "AWS_ACCESS_KEY_ID": "AKIANOTREAL",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-notreal",
}
BASICS = {
    "PATH": os.environ["PATH"],
    "HOME": "/home/reconciler",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",  # also keeps Python from coercing the locale, which would add LC_CTYPE
    "LC_MESSAGES": "C",
    "TMPDIR": "/tmp",
}
METADATA = {
    "MCP_SERVER": "calendar",
    "MCP_CLIENT_NAME": "claude-desktop",
    "MCP_CLIENT_ID": "cid-1",
    "MCP_SECRET_KEY": "calendar/claude-desktop",
}


def _delivered_environment(tmp_path: Path, environ: dict[str, str], env: list[str]) -> dict[str, str]:
    """The environment a real program was run with, as it dumped it."""
    report_path = tmp_path / "report.json"
    sink = command_sink([str(script(tmp_path, "store", STORE)), str(report_path)], environ, env=env)
    sink.check()
    sink.deliver(RECORD, SECRET)
    found: dict[str, str] = json.loads(report_path.read_text())["env"]
    return found


def test_the_program_gets_only_the_basics_the_metadata_and_the_listed_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"OTHER_{secrets.token_hex(4).upper()}"
    parent = {**BASICS, **CONFIDENTIAL, other: "other-value", "STORE_API_TOKEN": "for-the-script"}
    for name, value in parent.items():  # in the process too, so inheriting it by accident would show
        monkeypatch.setenv(name, value)
    env = _delivered_environment(tmp_path, dict(os.environ), ["STORE_API_TOKEN"])
    assert env == {**BASICS, **METADATA, "STORE_API_TOKEN": "for-the-script"}
    dumped = json.dumps(env)
    for value in [*CONFIDENTIAL.values(), "other-value"]:
        assert value not in dumped


def test_a_basic_that_is_not_set_is_not_made_up(tmp_path: Path) -> None:
    env = _delivered_environment(tmp_path, {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}, [])
    assert env == {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", **METADATA}


def test_a_listed_name_that_is_not_set_is_absent_and_the_metadata_cannot_be_overridden(
    tmp_path: Path,
) -> None:
    environ = {**BASICS, **CONFIDENTIAL, "MCP_SERVER": "spoofed"}
    env = _delivered_environment(tmp_path, environ, ["NOT_SET_ANYWHERE", "MCP_SERVER"])
    assert "NOT_SET_ANYWHERE" not in env
    assert env == {**BASICS, **METADATA}


def test_a_listed_token_is_passed_when_asked_for(tmp_path: Path) -> None:
    env = _delivered_environment(tmp_path, {**BASICS, **CONFIDENTIAL}, ["GITHUB_TOKEN"])
    assert env == {**BASICS, **METADATA, "GITHUB_TOKEN": CONFIDENTIAL["GITHUB_TOKEN"]}


def test_env_names_are_checked_by_the_manifest_loader(write: Writer) -> None:
    folder = write(
        "p.yaml",
        "kind: Project\nprojectId: P2\nsinks:\n"
        "  cmd: {type: command, command: [x], env: [GOOD_NAME, BAD-NAME, 1ST]}\n"
        "  one: {type: command, command: [x], env: TOKEN}\n"
        "  twice: {type: command, command: [x], env: [A, A]}\n",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(folder)], environ={})
    assert [str(p).replace(f"{folder}/", "") for p in caught.value.problems] == [
        "p.yaml:4:55: sinks.cmd.env[1]: 'BAD-NAME' must be an environment variable name",
        "p.yaml:4:65: sinks.cmd.env[2]: '1ST' must be an environment variable name",
        "p.yaml:5:43: sinks.one.env: expected a list, got a string",
        "p.yaml:6:45: sinks.twice.env: contains duplicate items",
    ]


def test_env_names_load_into_the_sink_settings(write: Writer) -> None:
    folder = write(
        "p.yaml",
        "kind: Project\nprojectId: P2\nsinks:\n  cmd: {type: command, command: [x], env: [_TOKEN, aws_2]}\n",
    )
    project = load_manifest([str(folder)], environ={}).project
    assert project.sink_settings()["cmd"] == {"type": "command", "command": ["x"], "env": ["_TOKEN", "aws_2"]}


def test_a_bare_name_is_found_on_the_given_path(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script(folder, "store-secret", STORE)
    sink = command_sink(["store-secret", str(tmp_path / "report.json")], {"PATH": str(folder)})
    sink.check()
    sink.deliver(RECORD, SECRET)
    report = json.loads((tmp_path / "report.json").read_text())
    # argv[0] is whatever the interpreter of a script is handed: the resolved path.
    assert report["argv"][0] == str(folder / "store-secret")
    assert report["env"]["PATH"] == str(folder)  # the PATH it was found on is the PATH it gets


def test_a_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script(tmp_path, "store.py", STORE)
    sink = command_sink(["./store.py", "report.json"])
    sink.deliver(RECORD, SECRET)
    assert json.loads((tmp_path / "report.json").read_text())["stdin"] == CANARY + "\n"


def test_a_failing_command_reports_its_exit_code_but_not_its_output(tmp_path: Path) -> None:
    sink = command_sink([str(script(tmp_path, "fail", ECHO_AND_FAIL))])
    message = expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert "exited with code 3" in message
    assert "got" not in message


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    sink = command_sink([str(script(tmp_path, "hang", HANG)), str(pid_file)], timeout=1.0)
    started = time.monotonic()
    message = expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert time.monotonic() - started < 10
    assert "did not finish within 1 seconds and was killed" in message
    # The grandchild was sent SIGKILL with its group; on a loaded machine (the suite runs on every
    # core) it may take a moment to be scheduled and die: far less than the minute it would sleep.
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _running(grandchild)


def test_a_missing_program_is_reported_by_check_and_deliver() -> None:
    sink = command_sink(["no-such-program-mcp-reconciler"])
    assert "was not found on PATH" in expect_sink_error(sink.check, CANARY)
    assert "was not found on PATH" in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)


def test_a_missing_path_and_a_non_executable_file_are_reported(tmp_path: Path) -> None:
    missing = command_sink([str(tmp_path / "absent.sh")])
    assert "does not exist" in expect_sink_error(missing.check, CANARY)
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o600)
    sink = command_sink([str(plain)])
    assert "is not executable: chmod +x it" in expect_sink_error(sink.check, CANARY)


def test_a_program_that_cannot_start_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o700)
    sink = command_sink([str(broken)])
    sink.check()  # it exists and is executable; only running it shows the bad interpreter
    assert "cannot run" in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)


def test_a_program_that_ignores_stdin_still_succeeds(tmp_path: Path) -> None:
    sink = command_sink([str(script(tmp_path, "ignore", "pass\n"))])
    sink.deliver(RECORD, SECRET)


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting for a reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
