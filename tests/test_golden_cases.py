"""Whole-flow goldens: tests/cases/NNN-name/ holds manifests, a seeded live project and the expected
plan and drift in every format. ``pytest --regen-goldens`` rewrites the expectations; review the diff.

A case's optional ``outcome.json`` says how a command ends when not with exit 0, by command: its exit
code and lines its stderr must hold (``{"plan": {"exit": 1, "stderr": ["..."]}}``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted(p for p in (ROOT / "tests" / "cases").iterdir() if p.is_dir())
KEY = "K2-golden-key-0c3e"
OUTPUTS = [
    ("plan", "text", "plan.txt"),
    ("plan", "json", "plan.json"),
    ("plan", "markdown", "plan.md"),
    ("drift", "text", "drift.txt"),
    ("drift", "json", "drift.json"),
    ("drift", "markdown", "drift.md"),
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(project_id="P2GOLDEN", management_key=KEY)) as handle:
        yield handle


def _seeded(emulator: RunningEmulator, case: Path) -> None:
    emulator.reset()
    emulator.seed(json.loads((case / "live.json").read_text()))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
@pytest.mark.parametrize(("command", "output_format", "filename"), OUTPUTS, ids=str)
def test_case(  # noqa: PLR0917 - pytest passes fixtures and parameters positionally
    case: Path,
    command: str,
    output_format: str,
    filename: str,
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    _seeded(emulator, case)
    # The outputs name the manifests as a run from the repository's root does (tests/cases/...), and
    # the case's file sink (.secrets/golden.json) is relative to the working directory: the run is
    # made in a copy laid out alike under tmp_path, so nothing is read or written in the checkout.
    manifests = tmp_path / case.relative_to(ROOT) / "manifests"
    shutil.copytree(case / "manifests", manifests)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCOPE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    monkeypatch.delenv("NO_COLOR", raising=False)
    args: list[Any] = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else []
    if command == "drift":
        args = []  # drift looks at the whole project
    code = run([command, str(manifests), "--format", output_format, *args])
    captured = capsys.readouterr()
    outcomes = json.loads((case / "outcome.json").read_text()) if (case / "outcome.json").exists() else {}
    outcome = outcomes.get(command, {})
    assert code == outcome.get("exit", 0), captured.err
    for line in outcome.get("stderr", []):
        assert line in captured.err
    expected = case / "expected" / filename
    if request.config.getoption("--regen-goldens"):
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(captured.out)
    assert expected.exists(), f"no golden {expected}: run pytest --regen-goldens and review it"
    assert captured.out == expected.read_text()
    if output_format == "json":
        json.loads(captured.out)  # well-formed
    assert KEY not in captured.out + captured.err
