"""The README stays true: its manifest examples validate and its quick start matches .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.manifest import load_manifest
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_readme_manifest_examples_validate_together(tmp_path: Path) -> None:
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if b.startswith("kind:")]
    assert len(blocks) == 3
    for index, block in enumerate(blocks):
        (tmp_path / f"{index}.yaml").write_text(block)
    manifest = load_manifest([str(tmp_path)], environ={"DESCOPE_PROJECT_ID": "P2readme"})
    calendar = manifest.server("calendar")
    assert calendar is not None
    assert [c.name for c in calendar.clients] == ["scheduling-agent", "reporting-job"]


def test_ci_runs_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(python3 dev\.py \w+)", quick_start, re.M)
    assert commands == ["python3 dev.py demo", "python3 dev.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^python3 dev\.py test$", ci, re.M)


def test_every_command_in_the_readme_has_help_and_the_help_lists_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = re.findall(r"`([a-z-]+(?: check)?)`", README.split("> Commands:", 1)[1].split("\n", 1)[0])
    assert listed == [
        "demo",
        "validate",
        "plan",
        "show",
        "apply",
        "drift",
        "export",
        "schemas",
        "secrets check",
        "emulator",
        "emulator-console",
    ]
    assert run(["--help"]) == 0
    overview = capsys.readouterr().out
    for command in listed:
        assert re.search(rf"^  {command.split()[0]}\s", overview, re.M), command
        assert run([*command.split(), "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"Usage: mcp-reconciler {command}")
    assert "Exit codes: 0 success (for plan/drift: no changes), 1 error, 2 changes or drift" in overview
