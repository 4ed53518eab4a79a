"""apply end to end against the emulator over HTTP, with a real file sink."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.plan import Action, Change, Kind, Plan, SecretTarget
from reconciler.planner import build_plan
from reconciler.scopes import read_scopes
from reconciler.sinks.base import SinkError
from reconciler.sinks.file import FileSink
from tests.conftest import EXAMPLES, serving

KEY = "K2-apply-key-93ab"
PROJECT = "P2MCPRECONCILERDEMO"
OWNER = "managed-by:mcp-reconciler"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("MCP_VAR_SECRETS_DIR", str(tmp_path / "secrets"))
        # The journal beside the Project file would be the checkout's manifests/.mcp-reconciler for
        # the examples: this test's own folder instead.
        monkeypatch.setenv("MCP_RECONCILER_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.chdir(tmp_path)
        yield handle


def live_secrets(emulator: RunningEmulator) -> dict[str, str]:
    """Every client secret the emulator holds, by server/client name."""
    return {
        f"{s['name']}/{c['name']}": c["secret"]
        for s in emulator.state()["servers"]
        for c in s.get("clients", [])
        if "secret" in c
    }


def sink_secrets(tmp_path: Path) -> dict[str, str]:
    """What the example manifests' file sinks hold, by server/client name."""
    held = {
        k: v["clientSecret"]
        for k, v in json.loads((tmp_path / "secrets" / "mcp-clients.json").read_text()).items()
    }
    for line in (tmp_path / "secrets" / "agents.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "CALENDAR_REPORTING_CLIENT_SECRET":
            held["calendar/reporting-job"] = value.strip("'")  # token_urlsafe values need no unescaping
    return held


def test_apply_examples_then_plan_is_empty_and_every_secret_is_in_its_sink(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", str(EXAMPLES), "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "Apply finished in" in out
    assert (
        "9 created, 0 updated, 0 adopted, 0 deleted, 0 secrets rotated; 0 failed, 0 skipped; 5 secrets delivered."
        in out
    )
    assert run(["plan", str(EXAMPLES), "--detailed-exitcode"]) == 0
    live = live_secrets(emulator)
    assert len(live) == 5
    assert sink_secrets(tmp_path) == live
    assert run(["secrets", "check", str(EXAMPLES)]) == 0
    assert "5 of 5 secrets are in their sinks" in capsys.readouterr().out


def test_an_update_keeps_every_field_the_manifest_does_not_manage(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {
            "servers": [
                {
                    "name": "kept",
                    "description": "old",
                    "tags": ["hand-made", "team:x", OWNER],
                    "loginPageURL": "https://login.example.com",
                    "forceAddAllAuthorizationInfo": True,
                    "unknownFutureField": {"nested": [1, 2]},
                    "approvedScopes": [{"name": "s", "description": "S"}],
                }
            ]
        }
    )
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "p.yaml").write_text("kind: Project\nprojectId: P2MCPRECONCILERDEMO\n")
    (folder / "s.yaml").write_text("kind: MCPServer\nname: kept\ndescription: new\n")
    assert run(["apply", str(folder), "--auto-approve"]) == 0
    (server,) = emulator.state()["servers"]
    assert server["description"] == "new"
    assert server["loginPageURL"] == "https://login.example.com"
    assert server["forceAddAllAuthorizationInfo"] is True
    assert server["unknownFutureField"] == {"nested": [1, 2]}
    assert server["tags"] == ["hand-made", "team:x", OWNER]
    assert [s["name"] for s in read_scopes(server["approvedScopes"])[0]] == ["s"]


def _manifests(tmp_path: Path, servers: str) -> Path:
    folder = tmp_path / "m"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "kind: Project\nprojectId: P2MCPRECONCILERDEMO\nprune: true\ndefaultSink: local\n"
        f"sinks:\n  local: {{type: file, path: {tmp_path / 'secrets' / 'out.json'}}}\n"
    )
    (folder / "s.yaml").write_text(servers)
    return folder


ONE = "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\nclients:\n  - {name: a, scopes: [r]}\n"


def test_rotation_rotates_exactly_once_and_delivers_the_new_secret(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["apply", str(_manifests(tmp_path, ONE)), "--auto-approve"]) == 0
    first = live_secrets(emulator)["s/a"]
    rotated = ONE.replace("scopes: [r]}", "scopes: [r], secret: {rotation: r1}}")
    emulator.reset(counters_only=True)
    assert run(["apply", str(_manifests(tmp_path, rotated)), "--auto-approve"]) == 0
    assert emulator.stats()["requests"]["server/client/secret/rotate"] == 1
    second = live_secrets(emulator)["s/a"]
    assert second != first
    held = json.loads((tmp_path / "secrets" / "out.json").read_text())
    assert held["s/a"]["clientSecret"] == second
    capsys.readouterr()
    assert run(["plan", str(_manifests(tmp_path, rotated)), "--detailed-exitcode"]) == 0


def test_deletes_go_in_bulk_calls(emulator: RunningEmulator, tmp_path: Path) -> None:
    three = ONE.replace("  - {name: a, scopes: [r]}\n", "".join(f"  - {{name: c{i}}}\n" for i in range(3)))
    both = three + "---\nkind: MCPServer\nname: t\n---\nkind: MCPServer\nname: u\n"
    assert run(["apply", str(_manifests(tmp_path, both)), "--auto-approve"]) == 0
    emulator.reset(counters_only=True)
    assert (
        run(
            [
                "apply",
                str(_manifests(tmp_path, ONE.replace("clients:\n  - {name: a, scopes: [r]}\n", ""))),
                "--auto-approve",
                "--allow-deletes",
                "5",
            ]
        )
        == 0
    )
    requests = emulator.stats()["requests"]
    assert requests["server/clients/delete"] == 1
    assert requests["servers/delete"] == 1
    assert [s["name"] for s in emulator.state()["servers"]] == ["s"]
    assert emulator.state()["servers"][0].get("clients", []) == []


def test_a_saved_plan_is_applied_exactly_and_refused_when_stale_or_tampered(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(tmp_path, ONE)
    saved = tmp_path / "plan.json"
    assert run(["plan", str(folder), "--out", str(saved)]) == 0
    document: dict[str, Any] = json.loads(saved.read_text())
    tampered = tmp_path / "tampered.json"
    document["changes"][0]["desired"]["name"] = "evil"
    tampered.write_text(json.dumps(document))
    capsys.readouterr()
    assert run(["apply", str(tampered)]) == 1
    assert "the checksum does not match: the plan was edited or damaged" in capsys.readouterr().err
    truncated = tmp_path / "truncated.json"
    truncated.write_text(saved.read_text()[:200])
    assert run(["apply", str(truncated)]) == 1
    assert "not a complete JSON document (truncated?)" in capsys.readouterr().err

    emulator.seed({"servers": [{"name": "s", "tags": [OWNER]}]})  # someone made it meanwhile
    assert run(["apply", str(saved)]) == 1
    err = capsys.readouterr().err
    assert "error: the saved plan is stale: 1 object changed since it was made" in err
    assert 'server "s" now exists (MS' in err
    emulator.reset()
    assert run(["apply", str(saved)]) == 0
    assert [s["name"] for s in emulator.state()["servers"]] == ["s"]


def test_an_undelivered_secret_exits_3_and_is_delivered_by_the_next_run(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(tmp_path, ONE)
    (tmp_path / "secrets").mkdir(mode=0o700)
    apply = ["apply", str(folder), "--auto-approve"]

    # The sink passes its check, then every delivery fails: the client exists, its secret is not stored.
    def broken(self: Any, record: Any, secret: Any) -> None:
        raise SinkError("disk full (simulated)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSink, "deliver", broken)
        assert run(apply) == 3
    err = capsys.readouterr().err
    assert 'secret not delivered: client "s/a": disk full (simulated)' in err
    assert run(["secrets", "check", str(folder)]) == 3
    assert run(apply) == 0  # nothing to change, but the open delivery is finished first
    held = json.loads((tmp_path / "secrets" / "out.json").read_text())
    assert held["s/a"]["clientSecret"] == live_secrets(emulator)["s/a"]
    assert emulator.stats()["requests"].get("server/client/secret/rotate", 0) == 0
    assert run(["secrets", "check", str(folder)]) == 0


def test_github_actions_masks_every_secret_first(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run(["apply", str(EXAMPLES), "--auto-approve"]) == 0
    lines = capsys.readouterr().out.splitlines()
    masks = [line.removeprefix("::add-mask::") for line in lines if line.startswith("::add-mask::")]
    assert sorted(masks) == sorted(live_secrets(emulator).values())
    # Outside the mask announcements, no secret appears.
    rest = "\n".join(line for line in lines if not line.startswith("::add-mask::"))
    assert not any(secret in rest for secret in masks)


def test_a_failure_skips_only_what_depends_on_it_and_every_failure_is_reported(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator.seed({"servers": [{"name": "ok", "tags": [OWNER]}]})
    folder = _manifests(tmp_path, "kind: MCPServer\nname: ok\ndescription: changed\n")
    # Add a server the API will refuse (an empty name) and a client that depends on it: no manifest
    # can say that, so the plan is extended on its way from the planner to the applier.
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
    capsys.readouterr()
    assert run(["apply", str(folder), "--auto-approve"]) == 1
    captured = capsys.readouterr()
    assert 'failed: create server "bad": POST /v1/mgmt/mcp/server/create failed: 400 ' in captured.err
    assert 'skipped: create client "bad/c": its server "bad" was not applied' in captured.err
    assert (
        "0 created, 1 updated, 0 adopted, 0 deleted, 0 secrets rotated; 1 failed, 1 skipped" in captured.out
    )
    assert emulator.state()["servers"][0]["description"] == "changed"
    events = [
        json.loads(line)["event"] for line in (tmp_path / "state" / "journal.jsonl").read_text().splitlines()
    ]
    assert events[0] == "apply-started"
    assert events[-1] == "apply-finished"
    assert {"failed", "skipped", "finished"} <= set(events)


def test_secrets_check_fix_delivers_missing_secrets_again(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(tmp_path, ONE)
    assert run(["apply", str(folder), "--auto-approve"]) == 0
    (tmp_path / "secrets" / "out.json").write_text("{}")
    capsys.readouterr()
    assert run(["secrets", "check", str(folder)]) == 3
    assert '   missing  client "s/a" -> sink local' in capsys.readouterr().out
    assert run(["secrets", "check", str(folder), "--fix"]) == 0
    assert '     fixed  client "s/a" -> sink local' in capsys.readouterr().out
    assert (
        json.loads((tmp_path / "secrets" / "out.json").read_text())["s/a"]["clientSecret"]
        == live_secrets(emulator)["s/a"]
    )


def test_plan_warns_when_a_sink_for_new_secrets_is_unusable(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(tmp_path, ONE)
    (folder / "p.yaml").write_text(
        "kind: Project\nprojectId: P2MCPRECONCILERDEMO\ndefaultSink: vault\n"
        "sinks:\n  vault: {type: vault, url: 'http://127.0.0.1:9', tokenEnv: NO_SUCH_TOKEN_VAR}\n"
    )
    assert run(["plan", str(folder)]) == 0
    out = capsys.readouterr().out  # the text plan says it beside the change it stops
    create = out[out.index('+ client "s/a" will be created') :]
    assert '# secret goes to sink "vault", key "s/a"' in create
    assert "! the sink cannot take it: " in create
    assert "NO_SUCH_TOKEN_VAR" in create
    assert "; apply will not create it" in create
    for output_format in ("json", "markdown"):  # and so does every other format, and stderr
        assert run(["plan", str(folder), "--format", output_format]) == 0
        captured = capsys.readouterr()
        assert captured.err.startswith("warning: ")
        assert "vault" in captured.err
        assert "apply will not create or rotate clients whose secrets go there" in captured.err
        assert "NO_SUCH_TOKEN_VAR" in captured.out.replace("\\_", "_")  # markdown escapes the _
    document = json.loads((run(["plan", str(folder), "--format", "json"]), capsys.readouterr().out)[1])
    (change,) = [c for c in document["changes"] if c["kind"] == "client"]
    assert "NO_SUCH_TOKEN_VAR" in change["secret"]["problem"]
    assert set(document["sinkProblems"]) == {"vault"}
    assert run(["apply", str(folder), "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert "skipped: create client \"s/a\": sink 'vault' is not usable" in err
    assert [s["name"] for s in emulator.state()["servers"]] == ["s"]
    assert emulator.state()["servers"][0].get("clients", []) == []
