"""A secret a previous run could not deliver goes where the manifests send it now, or is closed with a
note when it has nowhere to go: never an exit 3 on every apply for ever, never a broken promise."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler import kinds
from reconciler.cli import run
from reconciler.descope.client import DescopeClient
from reconciler.descope.wire import LiveServer
from reconciler.emulator import RunningEmulator
from reconciler.errors import BadRequest
from reconciler.journal import read_events
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, SinkError
from reconciler.sinks.file import FileSink
from tests.conftest import serving

KEY = "K2-open-deliveries-key-41c9"
PROJECT = "P2OPENDELIVERIES"
SERVER = "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\nclients:\n  - {name: a, scopes: [r]%s}\n"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _manifests(
    sinks: dict[str, str], default: str, client_extra: str = "", *, with_client: bool = True
) -> str:
    folder = Path("m")
    folder.mkdir(exist_ok=True)
    declared = "".join(f"  {name}: {{type: file, path: {path}}}\n" for name, path in sinks.items())
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: {default}\nsinks:\n{declared}"
    )
    server = (
        SERVER % client_extra if with_client else "kind: MCPServer\nname: s\napprovedScopes: [{name: r}]\n"
    )
    (folder / "s.yaml").write_text(server)
    return str(folder)


def _live_secret(emulator: RunningEmulator) -> str:
    return str(emulator.state()["servers"][0]["clients"][0]["secret"])


def _undelivered_first_apply(emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_sink: FileSink, _record: SecretRecord, _secret: Secret) -> None:
        raise SinkError("disk full (simulated)")

    folder = _manifests({"old": "old.json"}, "old")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSink, "deliver", broken)
        assert run(["apply", folder, "--auto-approve"]) == 3
    assert 'secret not delivered: client "s/a"' in capsys.readouterr().err
    assert len(emulator.state()["servers"][0]["clients"]) == 1


def test_a_removed_sink_does_not_keep_apply_at_exit_3_the_current_sink_gets_the_secret(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _undelivered_first_apply(emulator, capsys)
    folder = _manifests({"new": "new.json"}, "new")  # the sink "old" left the manifests
    assert run(["apply", folder, "--auto-approve"]) == 0
    err = capsys.readouterr().err
    assert (
        "note: client \"s/a\": a previous run could not deliver its secret to sink 'old' (key 's/a'); "
        "delivering it to the client's current sink 'new' (key 's/a') instead\n"
    ) in err
    assert json.loads(Path("m/new.json").read_text())["s/a"]["clientSecret"] == _live_secret(emulator)
    assert not Path("m/old.json").exists()
    assert run(["apply", folder, "--auto-approve"]) == 0  # closed: nothing more to do, no note
    assert "note:" not in capsys.readouterr().err
    assert run(["secrets", "check", folder]) == 0


def test_a_moved_secret_key_is_followed_too(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _undelivered_first_apply(emulator, capsys)
    folder = _manifests({"old": "old.json"}, "old", ", secret: {key: team/a}")
    assert run(["apply", folder, "--auto-approve"]) == 0
    assert (
        "delivering it to the client's current sink 'old' (key 'team/a') instead" in capsys.readouterr().err
    )
    assert json.loads(Path("m/old.json").read_text())["team/a"]["clientSecret"] == _live_secret(emulator)


def test_a_secret_with_nowhere_to_go_is_closed_with_a_note_once(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _undelivered_first_apply(emulator, capsys)
    # Both the client and its sink left the manifests (without prune, the client stays live).
    folder = _manifests({"other": "other.json"}, "other", with_client=False)
    assert run(["apply", folder, "--auto-approve"]) == 0
    err = capsys.readouterr().err
    assert (
        'note: client "s/a": a previous run could not deliver its secret, and neither the client nor '
        "its sink 'old' is in the manifests any more, so there is nowhere to deliver it; closed in the "
        "journal. If the client still exists in Descope, rotate its secret or delete it\n"
    ) in err
    events = [e["event"] for e in read_events(Path("m/.mcp-reconciler/journal.jsonl"))]
    assert "abandoned" in events
    assert run(["apply", folder, "--auto-approve"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_failed_changes_win_over_undelivered_secrets_and_both_are_said(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_sink: FileSink, _record: SecretRecord, _secret: Secret) -> None:
        raise SinkError("disk full (simulated)")

    monkeypatch.setattr(FileSink, "deliver", broken)
    folder = _manifests({"old": "old.json"}, "old")
    (Path(folder) / "t.yaml").write_text("kind: MCPServer\nname: t\n")
    monkeypatch.setattr(DescopeClient, "create_server", _fail_for("t"))
    assert run(["apply", folder, "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert 'failed: create server "t"' in err
    assert 'secret not delivered: client "s/a"' in err
    assert err.endswith(
        "error: 1 change(s) failed and 0 were skipped; also, 1 secret(s) did not reach their sink; the "
        "next apply (or 'mcp-reconciler secrets check --fix') delivers them again\n"
    )


def _fail_for(name: str) -> Callable[..., Awaitable[LiveServer]]:
    """DescopeClient.create_server, refusing (400) the server called ``name``."""
    create = DescopeClient.create_server

    async def create_server(self: DescopeClient, fields: Mapping[str, Any], **kwargs: Any) -> LiveServer:
        if fields.get("name") == name:
            raise BadRequest("refused (simulated)", endpoint=kinds.SERVER.endpoints.create, status=400)
        return await create(self, fields, **kwargs)

    return create_server


def test_secrets_check_trusts_the_journal_over_a_sink_it_cannot_read(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path("m")
    folder.mkdir()
    # A command sink cannot be read back; this one works only once the file "ok" exists.
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: run\n"
        "sinks:\n  run: {type: command, command: [sh, -c, 'test -f ok && cat > stored.txt']}\n"
    )
    (folder / "s.yaml").write_text(SERVER % "")
    assert run(["apply", "m", "--auto-approve"]) == 3
    capsys.readouterr()
    assert run(["secrets", "check", "m"]) == 3
    out = capsys.readouterr().out
    assert 'undelivered  client "s/a" -> sink run' in out
    Path("ok").touch()
    assert run(["secrets", "check", "m", "--fix"]) == 0
    assert '     fixed  client "s/a" -> sink run' in capsys.readouterr().out
    assert Path("stored.txt").read_text().strip() == _live_secret(emulator)
    assert run(["secrets", "check", "m"]) == 0
    assert 'unreadable  client "s/a" -> sink run' in capsys.readouterr().out
