"""Ctrl+C at any moment, start-up included, exits 130 with one line and no traceback; a bug of our own
says so in one line and keeps its traceback in a crash log.

The signal is sent from inside the process by a timer set once the package's first line has run
(before that, no program can handle it: CPython's initialisation and its search for the package are
not ours to guard; a SIGINT there ends the process as the signal's default does), and the tool then
runs as ``python -m reconciler`` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import run
from tests.conftest import EXAMPLES, ROOT

# From "before the package is imported" to "well into the command": start-up takes a few tenths.
DELAYS = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)
LAUNCH = """\
import atexit, os, runpy, signal, sys
# Ctrl+C as a terminal delivers it: a parent that ignores SIGINT (a shell's background job, and so the
# test run it started) passes that on, and Python keeps an ignored SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
import reconciler  # the package's first line: from here on a Ctrl+C is the tool's to handle
signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))
# A Ctrl+C after the command is done is none of its business: once the interpreter starts shutting
# down, a timer still pending would end the process with SIGALRM's default action instead.
atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)
sys.argv = ["mcp-reconciler", "validate", sys.argv[2]]
runpy.run_module("reconciler", run_name="__main__", alter_sys=True)
"""


def test_sigint_during_start_up_or_work_exits_130_without_a_traceback() -> None:
    outcomes = []
    for delay in DELAYS:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCH, str(delay), str(EXAMPLES)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in done.stderr, (delay, done.stderr)
        assert "internal error" not in done.stderr
        if done.returncode == 0:  # it finished before the signal arrived
            assert done.stdout.startswith("Manifests are valid")
        else:
            assert done.returncode == 130, (delay, done.returncode, done.stderr)
            assert done.stderr.strip() in ("", "Interrupted.", "Aborted."), done.stderr
        outcomes.append(done.returncode)
    assert outcomes.count(130) >= len(DELAYS) // 2  # most signals landed before the command was done


def test_an_internal_error_keeps_its_traceback_in_a_crash_log_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "K2-crash-log-management-key-5e1d"
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", key)
    monkeypatch.setenv("MCP_RECONCILER_JOURNAL", str(tmp_path / "state" / "journal.jsonl"))
    monkeypatch.delenv("MCP_RECONCILER_DEBUG", raising=False)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"a bug that quotes {key}")

    monkeypatch.setattr("reconciler.cli.validate.load", broken)
    assert run(["validate", str(EXAMPLES)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: RuntimeError: a bug that quotes <DESCOPE_MANAGEMENT_KEY> (")
    logs = list((tmp_path / "state").glob("mcp-reconciler-crash-*.log"))
    assert len(logs) == 1
    assert f"the traceback is in {logs[0]})" in err
    text = logs[0].read_text()
    assert "Traceback (most recent call last):" in text
    assert 'in broken\n    raise RuntimeError(f"a bug that quotes {key}")' in text  # the source line
    assert "RuntimeError: a bug that quotes <DESCOPE_MANAGEMENT_KEY>" in text
    assert key not in text + err
    assert logs[0].stat().st_mode & 0o777 == 0o600


def test_bad_input_is_never_reported_as_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text("kind: Project\nprojectId: [1, 2]\n")
    assert run(["validate", str(tmp_path)]) == 1
    assert "internal error" not in capsys.readouterr().err
    assert not list(tmp_path.rglob("mcp-reconciler-crash-*.log"))


def test_a_bug_in_the_loader_is_an_internal_error_not_a_yaml_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_JOURNAL", str(tmp_path / "state" / "journal.jsonl"))
    (tmp_path / "m.yaml").write_text("kind: Project\nprojectId: P2bug\n")

    def broken(*_args: object) -> None:
        raise TypeError("a bug of ours")

    monkeypatch.setattr("reconciler.yamlsource._Converter.convert", broken)
    assert run(["validate", str(tmp_path / "m.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: TypeError: a bug of ours (the traceback is in ")
    assert "cannot be read as YAML" not in err
    # What ruamel itself raises on a value stays a problem of the manifest.
    monkeypatch.undo()
    (tmp_path / "m.yaml").write_text("kind: Project\nprojectId: P2bug\nprune: !!int x\n")
    assert run(["validate", str(tmp_path / "m.yaml")]) == 1
    assert "a value cannot be read as YAML" in capsys.readouterr().err
