"""Shared fixtures: a clean environment for variables, strict emulators, and paths of the example manifests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "manifests"
DATA = Path(__file__).resolve().parent / "data"

# Every emulator of the suite is strict unless a test says otherwise: a write carrying a field Descope
# assigns is refused, as Descope's Go SDK never sends one. Set at import, before any fixture, so that it
# reaches emulators started in process and `mcp-reconciler emulator` subprocesses alike.
os.environ["MCP_RECONCILER_EMULATOR_STRICT"] = "1"

# The canary guard fails any test in which a client secret or the management key reaches a log
# handler or an output stream (tests/canary_guard.py); pytester runs it in the tests that prove it.
pytest_plugins = ("pytester", "tests.canary_guard")


@pytest.fixture(autouse=True)
def _clean_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables the example manifests read must come from the test, not from the developer's shell."""
    for name in (
        *("DESCOPE_PROJECT_ID", "GITHUB_ACTIONS", "MCP_RECONCILER_PLAN_KEY", "MCP_RECONCILER_VAR_FILE"),
        *("MCP_RECONCILER_STATE_DIR", "MCP_RECONCILER_JOURNAL", "MCP_RECONCILER_JOURNAL_KEEP_RUNS"),
    ):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("MCP_VAR_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _own_lock_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Project locks of this test in a folder of its own: not the user's state folder, and never shared
    with another test run on the same machine (tests that share one set it themselves)."""
    monkeypatch.setenv("MCP_RECONCILER_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


@pytest.fixture(autouse=True)
def _own_working_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test starts in an empty folder of its own (a test may chdir elsewhere): what a command
    writes relative to the working directory (the default journal, .mcp-reconciler/journal.jsonl, a
    file sink's relative path, a crash log) is the test's alone, never the repository's, nor another
    test's when tests run in parallel (python3 dev.py test runs them with pytest-xdist)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def project_yaml(project_id: str) -> str:
    """A Project manifest whose secrets go to one file sink, .secrets/clients.json (relative)."""
    return (
        f"kind: Project\nprojectId: {project_id}\ndefaultSink: local\n"
        "sinks:\n  local:\n    type: file\n    path: .secrets/clients.json\n"
    )


Writer = Callable[[str, str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """Write a manifest file under tmp_path and return the folder."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return tmp_path

    return _write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--live",
        action="store_true",
        default=False,
        help="run the API contract tests against the real Descope project in DESCOPE_PROJECT_ID "
        "(with DESCOPE_MANAGEMENT_KEY) instead of the emulator",
    )
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run the long versions of the reliability tests (e.g. 60 SIGKILL points instead of 12)",
    )
    parser.addoption(
        "--regen-goldens",
        action="store_true",
        default=False,
        help="rewrite the expected outputs of tests/cases/*/expected/ from the current code",
    )


def pytest_configure(config: pytest.Config) -> None:
    # The slow variants are chosen at import time by the modules that have them.
    if config.getoption("--slow"):
        os.environ["MCP_RECONCILER_SLOW"] = "1"


@contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, project: str, key: str) -> Iterator[RunningEmulator]:
    """An emulator for ``project``, with the environment set so the CLI talks to it."""
    with running_emulator(EmulatorConfig(project_id=project, management_key=key)) as handle:
        monkeypatch.setenv("DESCOPE_BASE_URL", handle.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", key)
        yield handle
