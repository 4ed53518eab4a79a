"""docs/UPGRADING.md stays true: its versions are the code's and the schemas', and a plan saved by an
older version is refused by apply and show, changing nothing, with a message that says what to do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import drift, plan
from reconciler.cli import run
from reconciler.render import results
from tests.conftest import EXAMPLES, ROOT, serving

UPGRADING = (ROOT / "docs" / "UPGRADING.md").read_text()
SCHEMAS = ROOT / "reconciler" / "schemas"
KEY = "K2-upgrading-test-key-91b"
PROJECT = "P2MCPRECONCILERDEMO"


def schema_versions(name: str) -> set[int]:
    """The ``const`` of every ``format_version`` the schema describes (validate's has two branches)."""
    text = (SCHEMAS / name).read_text()
    return {int(v) for v in re.findall(r'"(?:format_version|formatVersion)": \{[^{}]*"const": (\d+)', text)}


def table() -> dict[str, int]:
    """schema file → the version the table of docs/UPGRADING.md gives it."""
    rows = re.findall(r"^\| [^|]+ \| [^|]+ \| `([a-z-]+\.schema\.json)` \| (\d+) \|$", UPGRADING, re.M)
    return {name: int(version) for name, version in rows}


def test_the_table_names_every_versioned_document_at_its_schema_version() -> None:
    versioned = sorted(path.name for path in SCHEMAS.glob("*.schema.json") if schema_versions(path.name))
    assert sorted(table()) == versioned
    for name, version in table().items():
        assert schema_versions(name) == {version}, name


def test_the_table_is_the_code_s_versions() -> None:
    assert table()["plan.schema.json"] == plan.FORMAT_VERSION
    assert table()["drift.schema.json"] == drift.FORMAT_VERSION
    for name in ("validate", "apply", "export"):
        assert table()[f"{name}.schema.json"] == results.RESULTS_VERSION
    current = getattr(results, "SECRETS_CHECK_VERSION", results.RESULTS_VERSION)
    assert table()["secrets-check.schema.json"] == current


@pytest.mark.parametrize(
    ("section", "current"), [("plan", plan.FORMAT_VERSION), ("drift report", drift.FORMAT_VERSION)]
)
def test_the_history_tells_every_version(section: str, current: int) -> None:
    history = UPGRADING.split(f"\n### {section} (", 1)[1].split("\n### ", 1)[0]
    assert re.findall(r"^\*\*(\d+)\*\* \(", history, re.M) == [str(v) for v in range(1, current + 1)]


def test_the_readme_and_the_changelog_link_the_upgrade_notes() -> None:
    readme = (ROOT / "README.md").read_text()
    further = readme.split("## Further reading", 1)[1].split("\n## ", 1)[0]
    assert "(docs/UPGRADING.md)" in further
    assert "(CHANGELOG.md)" in further
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "(docs/UPGRADING.md)" in changelog
    assert changelog.index("## [Unreleased]") < changelog.index("\n## 2026-")


def test_a_plan_saved_by_an_older_version_is_refused_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    with serving(monkeypatch, PROJECT, KEY) as emulator:
        assert run(["plan", str(EXAMPLES), "--out", str(saved)]) == 0, capsys.readouterr().err
        document = json.loads(saved.read_text())
        assert document["format_version"] == plan.FORMAT_VERSION
        older = plan.FORMAT_VERSION - 1
        saved.write_text(json.dumps({**document, "format_version": older}))
        capsys.readouterr()

        assert run(["apply", str(saved)]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"error: {saved}: plan format version {older}; this mcp-reconciler reads {plan.FORMAT_VERSION}: "
            "it was made by an older mcp-reconciler; run plan --out again with this version "
            "(what changed: docs/UPGRADING.md)\n"
        )
        assert emulator.state()["servers"] == []
        assert emulator.stats()["total"] == 1 + 1  # the plan's servers/all and resources/load: no more

        assert run(["show", str(saved)]) == 1
        assert "it was made by an older mcp-reconciler" in capsys.readouterr().err


def test_the_upgrade_notes_quote_the_refusals_as_they_are() -> None:
    quoted = re.findall(r"^error: plan\.json: (plan format version .*)$", UPGRADING, re.M)
    assert len(quoted) == 2
    assert quoted[0].startswith(f"plan format version {plan.FORMAT_VERSION - 1}; this mcp-reconciler reads ")
    assert quoted[1].startswith(f"plan format version {plan.FORMAT_VERSION + 1}; this mcp-reconciler reads ")
