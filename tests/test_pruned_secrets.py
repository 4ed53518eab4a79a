"""Project ``pruneSecrets``: a deleted client's secret leaves its sink too, as the plan says it will.

End to end against the emulator with the file sink (JSON and dotenv); each sink's ``remove`` against
the real servers the sink tests use (OpenBao, moto) and GitHub's API through a mock transport.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.journal import read_events
from reconciler.secret import Secret
from reconciler.sinks import build_sinks
from reconciler.sinks.base import Removal, RemovingSink, SecretRecord, SinkError, Verification
from reconciler.sinks.command import CommandSink
from reconciler.sinks.file import FileSink
from reconciler.sinks.github import GithubSink
from tests.conftest import serving
from tests.sink_servers import running_moto, running_openbao

KEY = "K2-pruned-secrets-key-5d1e"
PROJECT = "P2PRUNEDSECRETS"
JOURNAL = Path(".mcp-reconciler") / "journal.jsonl"  # given as --journal: where it lives by default moves
SERVER = "kind: MCPServer\nname: crm\napprovedScopes: [{name: r}]\nclients:\n%s"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def manifests(clients: list[str], *, prune_secrets: bool = True, sink: str | None = None) -> str:
    sink = sink or f"{{type: file, path: {Path.cwd() / 's.json'}}}"
    folder = Path("m")
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\nprune: true\npruneSecrets: {str(prune_secrets).lower()}\n"
        f"defaultSink: local\nsinks:\n  local: {sink}\n"
    )
    server = folder / "s.yaml"
    if clients:
        server.write_text(SERVER % "".join(f"  - {{name: {name}, scopes: [r]}}\n" for name in clients))
    elif server.exists():
        server.unlink()
    return str(folder)


def apply(args: list[str]) -> int:
    return run(["apply", *args, "--journal", str(JOURNAL)])


def events(name: str) -> list[dict[str, object]]:
    return [event for event in read_events(JOURNAL) if event["event"] == name]


def test_a_pruned_clients_secret_leaves_the_file_sink_and_the_plan_says_so(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply([manifests(["bot", "app"]), "--auto-approve"]) == 0
    assert set(json.loads(Path("s.json").read_text())) == {"crm/bot", "crm/app"}
    folder = manifests(["app"])
    capsys.readouterr()
    assert run(["plan", folder]) == 0
    out = capsys.readouterr().out
    assert '- client "crm/bot" will be deleted' in out
    assert '      # secret removed from sink "local", key "crm/bot"' in out
    assert run(["plan", folder, "--format", "json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)["changes"]
    bot = next(c for c in emulator.state()["servers"][0]["clients"] if c["name"] == "bot")
    assert change["removeSecrets"] == [
        {"client": "bot", "clientId": bot["clientId"], "sink": "local", "key": "crm/bot"}
    ]
    assert run(["plan", folder, "--format", "markdown"]) == 0
    assert "- secret removed from sink `local`, key `crm/bot`" in capsys.readouterr().out

    assert run(["plan", folder, "--out", "plan.json"]) == 0  # the field survives a saved plan
    assert apply(["plan.json"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert set(json.loads(Path("s.json").read_text())) == {"crm/app"}
    (removed,) = events("secret-removed")
    assert {k: removed[k] for k in ("server", "client", "sink", "key", "found")} == {
        "server": "crm",
        "client": "bot",
        "sink": "local",
        "key": "crm/bot",
        "found": True,
    }
    assert run(["plan", folder, "--detailed-exitcode"]) == 0
    assert run(["secrets", "check", folder]) == 0


def test_a_server_delete_removes_the_secrets_of_its_cascaded_clients_from_a_dotenv_sink(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    dotenv = f"{{type: file, path: {Path.cwd() / 's.env'}, format: dotenv}}"
    assert apply([manifests(["bot", "app"], sink=dotenv), "--auto-approve"]) == 0
    Path("s.env").write_text(Path("s.env").read_text() + "# kept\nOTHER='x'\n")
    folder = manifests([], sink=dotenv)
    capsys.readouterr()
    assert run(["plan", folder]) == 0
    out = capsys.readouterr().out
    assert '# secret of client "app" removed from sink "local", key "crm/app"' in out
    assert '# secret of client "bot" removed from sink "local", key "crm/bot"' in out
    assert apply([folder, "--auto-approve"]) == 0
    assert emulator.state()["servers"] == []
    assert Path("s.env").read_text() == "# kept\nOTHER='x'\n"
    assert len(events("secret-removed")) == 2


def test_without_prune_secrets_nothing_is_removed_and_the_plan_json_is_as_before(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply([manifests(["bot", "app"], prune_secrets=False), "--auto-approve"]) == 0
    folder = manifests(["app"], prune_secrets=False)
    capsys.readouterr()
    assert run(["plan", folder, "--format", "json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)["changes"]
    assert "removeSecrets" not in change
    assert apply([folder, "--auto-approve"]) == 0
    assert set(json.loads(Path("s.json").read_text())) == {"crm/bot", "crm/app"}
    assert events("secret-removed") == []


def test_a_key_a_manifest_client_uses_is_never_removed(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply([manifests(["bot", "app"]), "--auto-approve"]) == 0
    folder = manifests(["app"])
    # The remaining client now takes the pruned one's place in the sink.
    server = Path(folder) / "s.yaml"
    server.write_text(server.read_text().replace("scopes: [r]}", "scopes: [r], secret: {key: crm/bot}}"))
    capsys.readouterr()
    assert run(["plan", folder, "--format", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert [c["action"] for c in changes] == ["delete"]
    assert "removeSecrets" not in changes[0]


def test_a_failed_removal_is_a_note_and_the_delete_stands(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert apply([manifests(["bot", "app"]), "--auto-approve"]) == 0

    def broken(_sink: FileSink, _record: SecretRecord) -> Removal:
        raise SinkError("sink 'local' (file): disk full (simulated)")

    monkeypatch.setattr(FileSink, "remove", broken)
    capsys.readouterr()
    assert apply([manifests(["app"]), "--auto-approve", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    note = (
        "client \"crm/bot\" was deleted, but its secret was not removed from sink 'local' (key "
        "'crm/bot'): sink 'local' (file): disk full (simulated); remove it by hand"
    )
    assert f"note: {note}" in err
    document = json.loads(out)
    assert document["exitCode"] == 0
    assert note in document["notices"]
    assert [c["name"] for c in emulator.state()["servers"][0]["clients"]] == ["app"]
    assert "crm/bot" in json.loads(Path("s.json").read_text())
    (failed,) = events("secret-not-removed")
    assert failed["key"] == "crm/bot"


def test_an_entry_that_names_another_client_id_is_left_in_place(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply([manifests(["bot", "app"]), "--auto-approve"]) == 0
    held = json.loads(Path("s.json").read_text())
    held["crm/bot"]["clientId"] = "someone-else"  # written there since by hand, for another client
    Path("s.json").write_text(json.dumps(held))
    capsys.readouterr()
    assert apply([manifests(["app"]), "--auto-approve"]) == 0
    assert "holds the secret of client id 'someone-else', not of the deleted client crm/bot" in (
        capsys.readouterr().err
    )
    assert json.loads(Path("s.json").read_text())["crm/bot"]["clientId"] == "someone-else"


def test_validate_refuses_prune_secrets_for_a_command_sink_and_without_a_default_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = manifests(["bot"], sink="{type: command, command: [cat]}")
    assert run(["validate", folder]) == 1
    assert "pruneSecrets cannot remove secrets from sink 'local': a command sink has no way to remove" in (
        capsys.readouterr().err
    )
    project = Path(folder) / "p.yaml"
    project.write_text(project.read_text().replace("defaultSink: local\n", ""))
    server = Path(folder) / "s.yaml"
    server.write_text(server.read_text().replace("scopes: [r]}", "scopes: [r], secret: {sink: local}}"))
    assert run(["validate", folder]) == 1
    assert "pruneSecrets removes a deleted client's secret from defaultSink: set defaultSink" in (
        capsys.readouterr().err
    )
    assert not isinstance(CommandSink("c", argv=["cat"], environ={}), RemovingSink)


# ---- each sink's remove ----------------------------------------------------------------------------


def record(client_id: str = "cid-1") -> SecretRecord:
    return SecretRecord("crm", "bot", client_id, f"t{uuid.uuid4().hex[:8]}/bot")


def test_file_sink_remove_json_and_dotenv(tmp_path: Path) -> None:
    for fmt in ("json", "dotenv"):
        sink = FileSink("f", path=tmp_path / f"s.{fmt}", format=fmt)
        gone, kept = record(), record()
        assert sink.remove(gone) is Removal.ABSENT  # no file yet
        sink.deliver(gone, Secret("one"))
        sink.deliver(kept, Secret("two"))
        assert sink.remove(gone) is Removal.REMOVED
        assert sink.verify(gone, Secret("one")) is Verification.MISSING
        assert sink.verify(kept, Secret("two")) is Verification.MATCH
        assert sink.remove(gone) is Removal.ABSENT


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_openbao("root-pruned", tmp_path_factory.mktemp("openbao")) as url:
        yield url


def test_vault_sink_removes_every_version_and_leaves_another_clients_entry(bao: str) -> None:
    sink = build_sinks({"bao": {"type": "vault", "url": bao}}, {"VAULT_TOKEN": "root-pruned"})["bao"]
    assert isinstance(sink, RemovingSink)
    mine = record()
    assert sink.remove(mine) is Removal.ABSENT
    sink.deliver(mine, Secret("one"))
    sink.deliver(mine, Secret("two"))
    assert sink.remove(mine) is Removal.REMOVED
    assert sink.verify(mine, Secret("two")) is Verification.MISSING
    assert sink.remove(mine) is Removal.ABSENT
    sink.deliver(mine, Secret("three"))  # the key can be written again from version 1
    assert sink.verify(mine, Secret("three")) is Verification.MATCH
    other = SecretRecord(mine.server, mine.client, "cid-other", mine.key)
    with pytest.raises(SinkError, match="holds the secret of client id 'cid-1'"):
        sink.remove(other)
    assert sink.verify(mine, Secret("three")) is Verification.MATCH
    sink.close()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        with running_moto(tmp_path_factory.mktemp("moto")) as url:
            yield url


def test_aws_sink_deletes_without_a_recovery_window(moto: str) -> None:
    environ = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    settings = {"type": "aws-secrets-manager", "region": "eu-west-1", "endpointUrl": moto}
    sink = build_sinks({"aws": settings}, environ)["aws"]
    assert isinstance(sink, RemovingSink)
    mine = record()
    assert sink.remove(mine) is Removal.ABSENT
    sink.deliver(mine, Secret("one"))
    other = SecretRecord(mine.server, mine.client, "cid-other", mine.key)
    with pytest.raises(SinkError, match="holds the secret of client id 'cid-1'"):
        sink.remove(other)
    assert sink.remove(mine) is Removal.REMOVED
    assert sink.verify(mine, Secret("one")) is Verification.MISSING
    assert sink.remove(mine) is Removal.ABSENT
    sink.deliver(mine, Secret("two"))  # not pending deletion: a client of the same name can come back
    assert sink.verify(mine, Secret("two")) is Verification.MATCH
    sink.close()


def test_github_sink_deletes_the_actions_secret() -> None:
    answers = {"MCP_GONE": 204, "MCP_ABSENT": 404, "MCP_FORBIDDEN": 403}
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(answers[request.url.path.rsplit("/", 1)[-1]])

    sink = GithubSink(
        "gh", repository="o/r", token="t", environment="prod", transport=httpx.MockTransport(handler)
    )
    assert sink.remove(SecretRecord("s", "c", "id", "mcp/gone")) is Removal.REMOVED
    assert sink.remove(SecretRecord("s", "c", "id", "mcp/absent")) is Removal.ABSENT
    with pytest.raises(SinkError, match="may not delete the secret MCP_FORBIDDEN"):
        sink.remove(SecretRecord("s", "c", "id", "mcp/forbidden"))
    assert seen[0] == ("DELETE", "/repos/o/r/environments/prod/secrets/MCP_GONE")
    sink.close()
