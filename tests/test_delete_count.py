"""One count of deletes, end to end: a server's clients deleted with it are listed under it and counted
alike by the summary, the delete budget and apply; a plan over the budget is shown whole in every
format, then refused with the exact --allow-deletes that accepts it, and nothing is saved or applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.plan import checksum
from tests.conftest import serving

KEY = "K2-delete-count-key-5521"
PROJECT = "P2MCPRECONCILERDEMO"
OWNER = "managed-by:mcp-reconciler"
REFUSAL = (
    "the plan deletes 3 objects (1 server and 2 clients), more than maxDeletes allows (1: 1); review the "
    "deletes in the plan, then accept them with --allow-deletes 3"
)
LIVE = {
    "servers": [
        {"id": "MS00000000000000000000000000CA", "name": "calendar", "tags": [OWNER]},
        {
            "id": "MS00000000000000000000000000CR",
            "name": "crm",
            "tags": [OWNER],
            "clients": [
                {"id": "MSC0000000000000000000000000A1", "name": "sales-copilot", "tags": [OWNER]},
                {"id": "MSC0000000000000000000000000A2", "name": "support-bot", "tags": [OWNER]},
            ],
        },
    ]
}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        handle.seed(LIVE)
        yield handle


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "project.yaml").write_text(f"kind: Project\nprojectId: {PROJECT}\nprune: true\nmaxDeletes: 1\n")
    (folder / "calendar.yaml").write_text("kind: MCPServer\nname: calendar\n")
    return folder


def _names(emulator: RunningEmulator) -> list[str]:
    return sorted(server["name"] for server in emulator.state()["servers"])


@pytest.mark.parametrize("output_format", ["text", "json", "markdown"])
def test_a_plan_over_the_budget_is_shown_whole_then_refused(
    emulator: RunningEmulator,
    manifests: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    output_format: str,
) -> None:
    saved = tmp_path / "plan.json"
    code = run(["plan", str(manifests), "--format", output_format, "--out", str(saved)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.rstrip().endswith(f"  {REFUSAL}\nerror: cannot plan: 1 problem")
    if output_format != "json":  # the clients the delete takes are named
        assert 'client "crm/sales-copilot"' in out
        assert 'client "crm/support-bot"' in out
    if output_format == "json":
        document = json.loads(out)
        assert document["summary"]["delete"] == 3
        assert document["refused"] == REFUSAL
        (change,) = document["changes"]
        assert [c["name"] for c in change["cascade"]] == ["sales-copilot", "support-bot"]
    elif output_format == "markdown":
        assert "> **Refused, not applied:** the plan deletes 3 objects" in out
        assert "| delete | 3 |" in out
    else:
        assert out.rstrip().endswith("Plan: 0 to create, 0 to update, 3 to delete, 0 secrets to rotate.")
    assert not saved.exists()  # a refused plan is never saved for apply
    assert _names(emulator) == ["calendar", "crm"]


def test_apply_shows_the_plan_it_refuses_and_changes_nothing(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", str(manifests), "--auto-approve"]) == 1
    out, err = capsys.readouterr()
    assert '- client "crm/support-bot" will be deleted with it' in out
    assert REFUSAL in err
    assert _names(emulator) == ["calendar", "crm"]


def test_with_the_number_the_refusal_names_the_summary_and_apply_count_alike(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", str(manifests), "--allow-deletes", "2"]) == 1  # one short: still refused
    assert "and --allow-deletes 2; review" in capsys.readouterr().err
    assert run(["plan", str(manifests), "--allow-deletes", "3"]) == 0
    assert "3 to delete" in capsys.readouterr().out
    assert run(["apply", str(manifests), "--auto-approve", "--allow-deletes", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 to delete" in out
    assert "0 adopted, 3 deleted," in out
    assert _names(emulator) == ["calendar"]


def test_a_saved_plan_that_says_it_was_refused_is_not_applied(
    emulator: RunningEmulator, manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    assert run(["plan", str(manifests), "--allow-deletes", "3", "--out", str(saved)]) == 0
    document = json.loads(saved.read_text())
    document["refused"] = "over budget"
    document["checksum"] = checksum(document)  # unsigned plans can be re-summed by anyone
    saved.write_text(json.dumps(document))
    capsys.readouterr()
    assert run(["apply", str(saved), str(manifests)]) == 1
    assert "the plan was refused when it was made (over budget)" in capsys.readouterr().err
    assert _names(emulator) == ["calendar", "crm"]
