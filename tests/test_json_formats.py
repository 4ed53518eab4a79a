"""--format json of validate, apply, secrets check and export: one document on stdout, valid against its
schema, true to what happened, with text mode's exit codes and never a secret (over HTTP, emulator)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.plan import Action, Change, Kind, Plan, SecretTarget
from reconciler.planner import build_plan
from reconciler.render.results import object_path
from reconciler.schemas import validator_for_document
from reconciler.sinks.base import SinkError
from reconciler.sinks.file import FileSink
from tests.conftest import DATA, EXAMPLES, ROOT, Writer, serving

KEY = "K2-json-formats-key-4e2b"
PROJECT = "P2MCPRECONCILERJSON"
OWNER = "managed-by:mcp-reconciler"
BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: valid in a name, never raw in output

SERVERS = (
    "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\nclients:\n"
    "  - {name: a, scopes: [r]}\n"
    f'  - {{name: "b{BIDI}x", scopes: [r]}}\n'
    "---\nkind: MCPServer\nname: t\n"
)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def manifests(tmp_path: Path, servers: str = SERVERS) -> Path:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\nprune: true\ndefaultSink: local\n"
        f"sinks:\n  local: {{type: file, path: {tmp_path / 'secrets' / 'out.json'}}}\n"
    )
    (folder / "s.yaml").write_text(servers)
    return folder


def document(out: str, schema: str) -> dict[str, Any]:
    """stdout as exactly one JSON document, valid against ``schema``."""
    parsed: dict[str, Any] = json.loads(out)
    errors = [e.message for e in validator_for_document(schema).iter_errors(parsed)]
    assert errors == [], errors
    return parsed


def live_secrets(emulator: RunningEmulator) -> list[str]:
    return [c["secret"] for s in emulator.state()["servers"] for c in s.get("clients", []) if "secret" in c]


def sink_secrets(tmp_path: Path) -> list[str]:
    path = tmp_path / "secrets" / "out.json"
    return [entry["clientSecret"] for entry in json.loads(path.read_text()).values()] if path.exists() else []


def assert_no_secret(output: str, *secrets: str) -> None:
    """None of ``secrets`` (what the emulator issued, or the sink holds) is in ``output``."""
    assert secrets
    for secret in secrets:
        assert len(secret) >= 16
        assert secret not in output


# ---- validate ---------------------------------------------------------------------------------------


def test_validate_json_of_valid_manifests_counts_and_warns(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["validate", str(EXAMPLES), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert document(captured.out, "validate.schema.json") == {
        "format_version": 1,
        "valid": True,
        "project": "P2MCPRECONCILERDEMO",
        "servers": 4,
        "clients": 5,
        "warnings": [],
    }
    assert captured.err == ""

    folder = write("p.yaml", f"kind: Project\nprojectId: {PROJECT}\n")
    write("s.yaml", f'kind: MCPServer\nname: "bad{BIDI}name"\n')
    assert run(["validate", str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert BIDI not in captured.out  # escaped as \u202e, the same data once parsed
    assert "\\u202e" in captured.out
    result = document(captured.out, "validate.schema.json")
    assert (result["servers"], result["clients"]) == (1, 0)
    (warning,) = result["warnings"]
    assert "s.yaml:1:1: warning: " in warning
    assert warning in captured.err  # people see it on stderr, as in text mode


def test_validate_json_of_invalid_manifests_lists_every_problem_and_keeps_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    broken = str((DATA / "broken").relative_to(ROOT))
    assert run(["validate", broken]) == 1
    text = capsys.readouterr()
    assert text.out == ""
    assert run(["validate", broken, "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.err == text.err  # the people's output, unchanged
    result = document(captured.out, "validate.schema.json")
    assert result["valid"] is False
    assert set(result) == {"format_version", "valid", "problems"}
    problems = result["problems"]
    assert len(problems) == 21
    assert problems[0] == {
        "file": "tests/data/broken/duplicate-keys.yaml",
        "line": 3,
        "column": 1,
        "path": "",
        "message": "duplicate key 'name'",
    }
    lines = text.err.splitlines()
    assert lines[-1] == "error: 21 problems found in the manifests"
    for problem, line in zip(problems, lines, strict=False):
        where = f"{problem['file']}:{problem['line']}:{problem['column']}: "
        assert line.startswith(where)
        assert line.endswith(problem["message"])

    # In GitHub Actions the annotations go to stderr: stdout stays one JSON document.
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run(["validate", broken, "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert document(captured.out, "validate.schema.json")["problems"] == problems
    assert "::error file=tests/data/broken/duplicate-keys.yaml,line=3,col=1::" in captured.err


# ---- apply ------------------------------------------------------------------------------------------


def test_apply_json_creates_reports_each_change_and_never_a_secret(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = manifests(tmp_path)
    assert run(["plan", str(folder), "--format", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert run(["apply", str(folder), "--auto-approve", "--format", "json"]) == 0
    captured = capsys.readouterr()
    result = document(captured.out, "apply.schema.json")
    assert result["project"] == PROJECT
    assert result["changeSet"] == planned["changeSet"]
    assert (result["ok"], result["exitCode"], result["outcome"]) == (True, 0, "applied")
    assert result["counts"] == {
        "created": 4,
        "updated": 0,
        "adopted": 0,
        "deleted": 0,
        "rotated": 0,
        "failed": 0,
        "skipped": 0,
        "delivered": 2,
        "undelivered": 0,
    }
    assert sorted((c["kind"], c["action"], c["address"], c["status"]) for c in result["changes"]) == [
        ("client", "create", "s/a", "done"),
        ("client", "create", f"s/b{BIDI}x", "done"),
        ("server", "create", "s", "done"),
        ("server", "create", "t", "done"),
    ]
    assert all("reason" not in c for c in result["changes"])
    assert (result["undelivered"], result["notices"]) == ([], [])
    assert BIDI not in captured.out  # escaped in the JSON text
    # Everything for people is on stderr: the plan and the summary.
    assert 'client "s/a" will be created' in captured.err
    assert "Apply finished in" in captured.err
    secrets = live_secrets(emulator)
    assert len(secrets) == 2
    assert sorted(sink_secrets(tmp_path)) == sorted(secrets)
    assert_no_secret(captured.out + captured.err, *secrets)

    # Nothing to do: a document with no changes, ok.
    assert run(["apply", str(folder), "--auto-approve", "--format", "json"]) == 0
    captured = capsys.readouterr()
    again = document(captured.out, "apply.schema.json")
    assert (again["ok"], again["exitCode"], again["outcome"], again["changes"]) == (True, 0, "applied", [])
    assert set(again["counts"].values()) == {0}
    assert "No changes." in captured.err
    assert_no_secret(captured.out + captured.err, *secrets)


def test_apply_json_reports_a_failed_and_a_skipped_change_with_exit_1(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator.seed({"servers": [{"name": "ok", "tags": [OWNER]}]})
    folder = manifests(tmp_path, "kind: MCPServer\nname: ok\ndescription: changed\n")
    # A server the API refuses (an empty name: a real 400 over HTTP) and a client that depends on it.
    bad_server = Change(Kind.SERVER, Action.CREATE, "bad", desired={"name": "", "tags": [OWNER]})
    orphan = Change(
        Kind.CLIENT,
        Action.CREATE,
        "c",
        server="bad",
        desired={"name": "c", "tags": [OWNER]},
        secret=SecretTarget("local", "bad/c"),
    )

    def with_failures(*args: Any, **kwargs: Any) -> Plan:
        plan = build_plan(*args, **kwargs)
        return replace(plan, changes=(bad_server, *plan.changes, orphan))

    monkeypatch.setattr("reconciler.workflow.build_plan", with_failures)
    assert run(["apply", str(folder), "--auto-approve", "--format", "json"]) == 1
    captured = capsys.readouterr()
    result = document(captured.out, "apply.schema.json")
    assert (result["ok"], result["exitCode"], result["outcome"]) == (False, 1, "failed")
    counts = result["counts"]
    assert (counts["created"], counts["updated"], counts["failed"], counts["skipped"]) == (0, 1, 1, 1)
    failed, updated, skipped = result["changes"]  # in the plan's order
    assert failed["address"] == "bad"
    assert (failed["kind"], failed["action"], failed["status"]) == ("server", "create", "failed")
    assert failed["reason"].startswith("POST /v1/mgmt/mcp/server/create failed: 400 ")
    assert updated == {"kind": "server", "action": "update", "address": "ok", "status": "done"}
    assert skipped == {
        "kind": "client",
        "action": "create",
        "address": "bad/c",
        "status": "skipped",
        "reason": 'its server "bad" was not applied',
    }
    # The people's lines and the error are on stderr, as in text mode.
    assert 'failed: create server "bad": POST /v1/mgmt/mcp/server/create failed: 400 ' in captured.err
    assert "error: 1 change(s) failed and 1 were skipped" in captured.err
    assert emulator.state()["servers"][0]["description"] == "changed"


def test_apply_json_counts_an_undelivered_secret_and_secrets_check_json_finds_and_fixes_it(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = manifests(tmp_path)
    (tmp_path / "secrets").mkdir(mode=0o700)

    def broken(self: Any, record: Any, secret: Any) -> None:
        raise SinkError("disk full (simulated)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSink, "deliver", broken)
        assert run(["apply", str(folder), "--auto-approve", "--format", "json"]) == 3
    captured = capsys.readouterr()
    result = document(captured.out, "apply.schema.json")
    assert (result["ok"], result["exitCode"], result["outcome"]) == (False, 3, "undelivered")
    assert (result["counts"]["delivered"], result["counts"]["undelivered"]) == (0, 2)
    assert {c["status"] for c in result["changes"]} == {"done"}
    assert sorted(u["address"] for u in result["undelivered"]) == ["s/a", f"s/b{BIDI}x"]
    assert all("disk full (simulated)" in u["reason"] for u in result["undelivered"])
    secrets = live_secrets(emulator)
    assert_no_secret(captured.out + captured.err, *secrets)

    assert run(["secrets", "check", str(folder), "--format", "json"]) == 3
    captured = capsys.readouterr()
    check = document(captured.out, "secrets-check.schema.json")
    assert (check["project"], check["fix"], check["ok"], check["exitCode"]) == (PROJECT, False, False, 3)
    assert check["counts"] == {
        "total": 2,
        "verified": 0,
        "unverified": 0,
        "problems": 2,
        "states": {"missing": 2},
    }
    assert check["secrets"] == [
        {"address": "s/a", "sink": "local", "state": "missing", "detail": "", "ok": False},
        {"address": f"s/b{BIDI}x", "sink": "local", "state": "missing", "detail": "", "ok": False},
    ]
    assert '   missing  client "s/a" -> sink local' in captured.err  # the lines for people
    assert "error: 2 secret(s) are not in their sinks; run with --fix to deliver them" in captured.err

    assert run(["secrets", "check", str(folder), "--fix", "--format", "json"]) == 0
    captured = capsys.readouterr()
    fixed = document(captured.out, "secrets-check.schema.json")
    assert (fixed["fix"], fixed["ok"], fixed["exitCode"]) == (True, True, 0)
    assert [(s["address"], s["state"], s["ok"]) for s in fixed["secrets"]] == [
        ("s/a", "fixed", True),
        (f"s/b{BIDI}x", "fixed", True),
    ]
    assert sorted(sink_secrets(tmp_path)) == sorted(secrets)
    assert_no_secret(captured.out + captured.err, *secrets)

    assert run(["secrets", "check", str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    matched = document(captured.out, "secrets-check.schema.json")
    assert matched["counts"] == {
        "total": 2,
        "verified": 2,
        "unverified": 0,
        "problems": 0,
        "states": {"match": 2},
    }
    assert_no_secret(captured.out + captured.err, *secrets)


def test_secrets_check_json_counts_a_client_not_issued_yet_as_no_problem(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["secrets", "check", str(manifests(tmp_path)), "--format", "json"]) == 0
    check = document(capsys.readouterr().out, "secrets-check.schema.json")
    assert (check["ok"], check["exitCode"], check["counts"]["problems"]) == (True, 0, 0)
    assert {(s["state"], s["ok"]) for s in check["secrets"]} == {("absent", False)}
    assert all(s["detail"] for s in check["secrets"])


def test_apply_json_of_a_saved_plan_and_in_github_actions_keeps_stdout_one_document(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = manifests(tmp_path)
    saved = tmp_path / "plan.json"
    assert run(["plan", str(folder), "--out", str(saved)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run(["apply", str(saved), "--format", "json"]) == 0
    captured = capsys.readouterr()
    result = document(captured.out, "apply.schema.json")  # the masks are not on stdout
    assert result["changeSet"] == json.loads(saved.read_text())["changeSet"]
    assert [c["status"] for c in result["changes"]] == ["done"] * 4
    masks = [
        line.removeprefix("::add-mask::") for line in captured.err.splitlines() if "::add-mask::" in line
    ]
    secrets = live_secrets(emulator)
    assert sorted(masks) == sorted(secrets)  # announced to the runner, on stderr
    rest = "\n".join(line for line in captured.err.splitlines() if not line.startswith("::add-mask::"))
    assert not any(secret in rest or secret in captured.out for secret in secrets)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_apply_json_needs_auto_approve_off_a_terminal_and_reports_a_cancel_on_one(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = manifests(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert run(["apply", str(folder), "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: apply needs --auto-approve when not run from a terminal" in captured.err

    monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
    assert run(["apply", str(folder), "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert "Apply these changes? Only 'yes' will be accepted" in captured.err
    assert "Apply cancelled; nothing was changed." in captured.err
    result = document(captured.out, "apply.schema.json")
    assert (result["ok"], result["exitCode"], result["outcome"]) == (False, 1, "cancelled")
    assert {(c["status"], c["reason"]) for c in result["changes"]} == {
        ("skipped", "the apply was cancelled; nothing was changed")
    }
    assert emulator.state()["servers"] == []


# ---- export -----------------------------------------------------------------------------------------


def test_export_json_names_the_files_written_and_the_objects_in_them_never_a_secret(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {
            "servers": [
                {
                    "name": "calendar",
                    "tags": [OWNER],
                    "approvedScopes": [{"name": "r"}],
                    "clients": [{"name": "agent", "scopes": ["r"], "tags": [OWNER]}, {"name": "job"}],
                },
                {"name": f"odd{BIDI}name"},
            ]
        }
    )
    secrets = live_secrets(emulator)
    assert len(secrets) == 2
    assert run(["export", "--out", "exported", "--format", "json"]) == 0
    captured = capsys.readouterr()
    result = document(captured.out, "export.schema.json")
    written = sorted(
        p.relative_to(tmp_path / "exported").as_posix() for p in (tmp_path / "exported").rglob("*")
    )
    written = [p for p in written if (tmp_path / "exported" / p).is_file()]
    assert result["files"] == written
    assert result["files"] == [
        ".gitignore",
        "project.yaml",
        "schemas/client.schema.json",
        "schemas/project.schema.json",
        "schemas/server.schema.json",
        "servers/calendar.yaml",
        "servers/odd-name.yaml",
    ]
    assert result["project"] == PROJECT
    assert result["out"] == "exported"
    by_name = {s["name"]: s for s in result["servers"]}
    assert by_name["calendar"] == {
        "name": "calendar",
        "file": "servers/calendar.yaml",
        "clients": ["agent", "job"],
    }
    assert by_name[f"odd{BIDI}name"] == {
        "name": f"odd{BIDI}name",
        "file": "servers/odd-name.yaml",
        "clients": [],
    }
    assert result["counts"] == {"servers": 2, "clients": 2, "unowned": 2}  # the job and the odd server
    assert result["adopt"] is False
    assert result["sink"] == {"name": "local", "path": "exported/.secrets/mcp-clients.json"}
    assert result["warnings"] == [
        "2 exported objects are not managed by mcp-reconciler yet: "
        "export with --adopt to take them over on the next apply"
    ]
    assert "Exported 2 servers and 2 clients to exported" in captured.err
    assert BIDI not in captured.out
    assert_no_secret(captured.out + captured.err, *secrets)
    assert run(["validate", "exported", "--format", "json"]) == 0  # the files are the manifests
    assert document(capsys.readouterr().out, "validate.schema.json")["clients"] == 2


# ---- help and the pure pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "schema"),
    [
        (["validate"], "validate.schema.json"),
        (["plan"], "plan.schema.json"),
        (["drift"], "drift.schema.json"),
        (["apply"], "apply.schema.json"),
        (["secrets", "check"], "secrets-check.schema.json"),
        (["export"], "export.schema.json"),
    ],
)
def test_each_commands_help_names_its_schema(
    command: list[str], schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*command, "--help"]) == 0
    assert f"schemas/{schema}" in " ".join(capsys.readouterr().out.split())


def test_format_choices_are_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", str(EXAMPLES), "--format", "markdown"]) == 1
    assert "'markdown' is not one of 'text', 'json'" in capsys.readouterr().err
    assert run(["plan", "--help"]) == 0
    assert "[text|json|markdown]" in capsys.readouterr().out


def test_object_path_reads_the_workflows_addresses() -> None:
    assert object_path('client "s/a"') == "s/a"
    assert object_path('server "say "hi""') == 'say "hi"'
    assert object_path("something else") == "something else"
