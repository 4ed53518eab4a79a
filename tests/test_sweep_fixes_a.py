"""What an adversarial sweep of the CLI found: each input is now a clean error (exit 1), never an
internal error, a hang, or a device node replaced by a file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.plan import checksum
from tests.conftest import serving

KEY = "K2-sweep-fixes-key-0f3b"
PROJECT = "P2SWEEPFIX"
MANIFEST = f"kind: Project\nprojectId: {PROJECT}\n---\nkind: MCPServer\nname: s\ndescription: d\n"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    Path("m").mkdir()
    Path("m/all.yaml").write_text(MANIFEST)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _clean_failure(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert run(list(args)) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert err.count("\n") >= 1
    return err


@pytest.mark.parametrize("kind", ["dangling-link", "fifo", "folder"])
def test_a_manifest_entry_that_cannot_be_read_is_an_error_never_skipped(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    odd = Path("m/sub/more.yaml")
    odd.parent.mkdir()
    if kind == "dangling-link":
        odd.symlink_to("nowhere.yaml")
    elif kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.mkdir()
    err = _clean_failure(capsys, "plan", "m")
    assert "m/sub/more.yaml: named like a manifest, but not a regular file to read" in err


def test_plan_out_never_replaces_a_fifo_and_a_bad_folder_is_a_clean_error(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo("pipe.json")
    err = _clean_failure(capsys, "plan", "m", "--out", "pipe.json")
    assert "not a regular file: refusing to replace it: pipe.json" in err
    assert stat.S_ISFIFO(os.stat("pipe.json").st_mode)
    Path("file").write_text("")
    err = _clean_failure(capsys, "plan", "m", "--out", "file/plan.json")
    assert err.startswith("error: ")


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
@pytest.mark.parametrize("kind", ["folder", "fifo", "missing-folder"])
def test_github_files_that_cannot_be_appended_to_are_clean_errors_not_hangs(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    kind: str,
) -> None:
    target = Path("target")
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = Path("missing/target")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv(variable, str(target))
    err = _clean_failure(capsys, "plan", "m")
    assert f"error: {variable}='{target}'" in err


def test_a_var_file_that_is_a_fifo_is_a_problem_not_a_hang(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo("vars.yaml")
    err = _clean_failure(capsys, "validate", "m", "--var-file", "vars.yaml")
    assert "vars.yaml:1:1: not a regular file" in err


def test_variable_values_must_be_text_and_long_numbers_stay_text(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("m/all.yaml").write_text(MANIFEST.replace("description: d", 'description: "${DESC:-x}"'))
    monkeypatch.setenv("MCP_VAR_DESC", "\udcff\udcfe")  # undecodable bytes, as Python reads them
    err = _clean_failure(capsys, "plan", "m")
    assert "description: the value of a variable: text with a lone surrogate" in err
    Path("m/all.yaml").write_text(MANIFEST.replace("description: d", "description: ${DESC}"))
    monkeypatch.setenv("MCP_VAR_DESC", "1" + "0" * 5000)
    assert run(["validate", "m"]) == 0  # kept as the text it is
    assert "internal error" not in capsys.readouterr().err


def test_saved_plans_with_invalid_unicode_or_a_non_ascii_signature_are_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["plan", "m", "--out", "plan.json"]) == 0
    document = json.loads(Path("plan.json").read_text())
    document["changes"][0]["notes"] = ["\ud800"]
    Path("plan.json").write_text(json.dumps(document))
    err = _clean_failure(capsys, "apply", "plan.json")
    assert "holds text that is not valid Unicode" in err
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", "plan-signing-key-0123456789abcdef")
    assert run(["plan", "m", "--out", "plan.json"]) == 0
    document = json.loads(Path("plan.json").read_text())
    document["signature"] = "hmac-sha256:é" + "0" * 63
    document["checksum"] = checksum(document)
    Path("plan.json").write_text(json.dumps(document))
    err = _clean_failure(capsys, "apply", "plan.json")
    assert (
        "the plan's signature does not match MCP_RECONCILER_PLAN_KEY" in err
        or "not a valid saved plan" in err
    )
    assert emulator.state()["servers"] == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:99999", "port 99999 is out of range"),
        ("http://xn--.com", "its host name is not valid"),
        ("ftp://example.com", "it needs http:// or https:// and a host"),
    ],
)
def test_unusable_base_urls_are_usage_errors(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    problem: str,
) -> None:
    monkeypatch.setenv("DESCOPE_BASE_URL", url)
    err = _clean_failure(capsys, "plan", "m")
    assert f"error: the API base URL (DESCOPE_BASE_URL) cannot be used: {problem}" in err


@pytest.mark.parametrize(
    "args",
    [
        ["apply", "m", "--auto-approve", "--lock-timeout", "nan"],
        ["apply", "m", "--auto-approve", "--lock-timeout", "inf"],
        ["plan", "m", "--rate-limit", "1/99999999999999999999"],
        ["plan", "m", "--rate-limit", "0/10"],
    ],
)
def test_numeric_options_that_would_stall_a_run_are_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _clean_failure(capsys, *args)
    assert emulator.state()["servers"] == []


def test_a_lock_folder_under_an_unknown_home_is_a_clean_error(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_LOCK_DIR", "~no-such-user-here/locks")
    err = _clean_failure(capsys, "apply", "m", "--auto-approve")
    assert "MCP_RECONCILER_LOCK_DIR='~no-such-user-here/locks': no such home folder" in err


def test_a_command_sink_timeout_is_bounded(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("m/all.yaml").write_text(
        MANIFEST.replace(
            f"projectId: {PROJECT}\n",
            f"projectId: {PROJECT}\nsinks:\n  run: {{type: command, command: [cat], timeoutSeconds: 1e12}}\n",
        )
    )
    err = _clean_failure(capsys, "validate", "m")
    assert "sinks.run.timeoutSeconds" in err
