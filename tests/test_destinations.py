"""validate compares secret destinations as each sink will write them, and refuses keys that would
leave a Vault or AWS prefix; a manifest it refuses changes nothing when applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.errors import ManifestError
from reconciler.manifest import load_manifest
from reconciler.secret import Secret
from reconciler.sinks.base import SecretRecord, aws_name_problem, env_name, leaves_prefix, secret_name
from reconciler.sinks.file import FileSink
from tests.conftest import serving

PROJECT_ID = "P2MCPRECONCILERDEMO"
KEY = "K2-destinations-key-41d7"

SINKS = """\
kind: Project
projectId: P2MCPRECONCILERDEMO
defaultSink: env
sinks:
  env: {type: file, path: .secrets/agents.env, format: dotenv}
  env-again: {type: file, path: ./.secrets/../.secrets/agents.env, format: dotenv}
  json: {type: file, path: .secrets/clients.json}
  json-again: {type: file, path: ./.secrets/clients.json}
  vault: {type: vault, url: 'https://vault.example.com:8200', pathPrefix: team-a/}
  vault-again: {type: vault, url: 'HTTPS://Vault.Example.com:8200/', pathPrefix: /team-a/}
  vault-elsewhere: {type: vault, url: 'https://other.example.com:8200', pathPrefix: team-a/}
  aws: {type: aws-secrets-manager, region: eu-west-1, namePrefix: mcp/}
  aws-crm: {type: aws-secrets-manager, region: eu-west-1, namePrefix: mcp/crm/}
  aws-us: {type: aws-secrets-manager, region: us-east-1, namePrefix: mcp/crm/}
  gh: {type: github, repository: acme/agents}
  gh-again: {type: github, repository: Acme/Agents}
  gh-prod: {type: github, repository: acme/agents, environment: prod}
  gh-prod-again: {type: github, repository: acme/agents, environment: Prod}
  hook: {type: command, command: [store-secret]}
"""


def _problems(folder: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(folder)], environ={})
    return [str(p).replace(f"{folder}/", "") for p in caught.value.problems]


def _server(*clients: str) -> str:
    listed = "".join(f"\n  - {c}" for c in clients) or " []"
    return f"kind: MCPServer\nname: crm\nclients:{listed}\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the Project above; file sink paths resolve against it (the working directory)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(SINKS)
    return tmp_path


def _write(folder: Path, *clients: str) -> Path:
    (folder / "s.yaml").write_text(_server(*clients))
    return folder


# ---- names normalised the way the sinks write them ---------------------------------------------


def test_dotenv_names_collide_after_upper_casing_and_replacement(folder: Path) -> None:
    _write(folder, "name: sync-bot", "name: sync_bot", "{name: Sync.Bot, secret: {key: CRM/SYNC-BOT}}")
    assert env_name("crm/sync-bot") == env_name("crm/sync_bot") == "CRM_SYNC_BOT"
    assert _problems(folder) == [
        "s.yaml:5:5: clients[1].secret: secret destination 'crm/sync_bot' in sink 'env' is already used by "
        "client 'sync-bot' at s.yaml:4:11 (server 'crm', key 'crm/sync-bot' in sink 'env'): both are "
        "written to the variable CRM_SYNC_BOT in .secrets/agents.env",
        "s.yaml:6:30: clients[2].secret: secret destination 'CRM/SYNC-BOT' in sink 'env' is already used by "
        "client 'sync-bot' at s.yaml:4:11 (server 'crm', key 'crm/sync-bot' in sink 'env'): both are "
        "written to the variable CRM_SYNC_BOT in .secrets/agents.env",
    ]


def test_the_existing_message_is_kept_for_identical_keys_in_one_sink(folder: Path) -> None:
    _write(folder, "{name: a, secret: {key: shared}}", "{name: b, secret: {key: shared}}")
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'shared' in sink 'env' is already used by "
        "client 'a' at s.yaml:4:12",
    ]


def test_what_validate_refuses_the_dotenv_sink_would_really_overwrite(tmp_path: Path) -> None:
    sink = FileSink("env", path=tmp_path / "agents.env", format="dotenv")
    sink.deliver(SecretRecord("crm", "sync-bot", "c1", "crm/sync-bot"), Secret("first-value"))
    sink.deliver(SecretRecord("crm", "sync_bot", "c2", "crm/sync_bot"), Secret("second-value"))
    assert (tmp_path / "agents.env").read_text() == "CRM_SYNC_BOT='second-value'\n"  # one lost the other


def test_json_keys_are_compared_exactly(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: json, key: crm/sync-bot}}",
        "{name: b, secret: {sink: json, key: crm/sync_bot}}",
        "{name: c, secret: {sink: json, key: CRM/SYNC-BOT}}",
    )
    assert load_manifest([str(folder)], environ={}).servers[0].clients[2].name == "c"


def test_github_names_collide_per_repository_and_environment(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: gh, key: github/deploy}}",
        "{name: b, secret: {sink: gh-again, key: mcp/github/deploy}}",  # the same repository, spelt otherwise
        "{name: c, secret: {sink: gh-prod, key: mcp/github/deploy}}",  # an environment is its own namespace
        "{name: d, secret: {sink: gh-prod-again, key: mcp.github.deploy}}",
    )
    assert secret_name("github/deploy") == secret_name("mcp/github/deploy") == "MCP_GITHUB_DEPLOY"
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'mcp/github/deploy' in sink 'gh-again' is already "
        "used by client 'a' at s.yaml:4:12 (server 'crm', key 'github/deploy' in sink 'gh'): both are "
        "written to the GitHub secret MCP_GITHUB_DEPLOY of Acme/Agents",
        "s.yaml:7:23: clients[3].secret: secret destination 'mcp.github.deploy' in sink 'gh-prod-again' is "
        "already used by client 'c' at s.yaml:6:12 (server 'crm', key 'mcp/github/deploy' in sink 'gh-prod'): "
        "both are written to the GitHub secret MCP_GITHUB_DEPLOY of acme/agents, environment Prod",
    ]


# ---- one file, however it is spelt -------------------------------------------------------------


def test_two_file_sinks_on_one_file_share_its_entries(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {key: crm/a}}",
        "{name: b, secret: {sink: env-again, key: CRM_A}}",
        "{name: c, secret: {sink: json, key: crm/c}}",
        "{name: d, secret: {sink: json-again, key: crm/c}}",
    )
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'CRM_A' in sink 'env-again' is already used by "
        "client 'a' at s.yaml:4:12 (server 'crm', key 'crm/a' in sink 'env'): both are written to the "
        "variable CRM_A in .secrets/agents.env",
        "s.yaml:7:23: clients[3].secret: secret destination 'crm/c' in sink 'json-again' is already used by "
        "client 'c' at s.yaml:6:12 (server 'crm', key 'crm/c' in sink 'json'): both are written to the "
        "entry 'crm/c' in .secrets/clients.json",
    ]


def test_a_symlinked_folder_is_the_same_file(folder: Path) -> None:
    (folder / ".secrets").mkdir()
    (folder / "linked").symlink_to(folder / ".secrets")
    (folder / "p.yaml").write_text(
        SINKS.replace("path: ./.secrets/clients.json", "path: linked/clients.json")
    )
    _write(folder, "{name: a, secret: {sink: json, key: k}}", "{name: b, secret: {sink: json-again, key: k}}")
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'k' in sink 'json-again' is already used by "
        "client 'a' at s.yaml:4:12 (server 'crm', key 'k' in sink 'json'): both are written to the entry "
        "'k' in .secrets/clients.json",
    ]


def test_two_formats_on_one_file_are_refused(folder: Path) -> None:
    (folder / "p.yaml").write_text(
        SINKS.replace("path: ./.secrets/clients.json}", "path: ./.secrets/clients.json, format: dotenv}")
    )
    _write(folder)
    assert _problems(folder) == [
        "p.yaml:8:34: sinks.json-again.path: sink 'json-again' writes .secrets/clients.json as dotenv, "
        "but sink 'json' (at p.yaml:7:28) writes the same file as json: a file holds one format; "
        "give one of them another path",
    ]


def test_a_nul_in_a_file_sink_path_is_a_problem_not_a_crash(folder: Path) -> None:
    (folder / "p.yaml").write_text(SINKS.replace("path: .secrets/clients.json}", 'path: ".secrets/a\\0b"}'))
    _write(folder, "{name: a, secret: {sink: json}}")
    assert _problems(folder) == ["p.yaml:7:28: sinks.json.path: a path cannot contain NUL"]


# ---- Vault paths and AWS names -----------------------------------------------------------------


def test_vault_paths_collide_after_joining_and_normalising(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: vault, key: db/main}}",
        "{name: b, secret: {sink: vault-again, key: db//main/}}",  # OpenBao reads both as team-a/db/main
        "{name: c, secret: {sink: vault, key: db/./main}}",
        "{name: d, secret: {sink: vault-elsewhere, key: db/main}}",  # another server
    )
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'db//main/' in sink 'vault-again' is already used "
        "by client 'a' at s.yaml:4:12 (server 'crm', key 'db/main' in sink 'vault'): both are written to the "
        "Vault secret secret/team-a/db/main at https://vault.example.com:8200",
        "s.yaml:6:23: clients[2].secret: secret destination 'db/./main' in sink 'vault' is already used by "
        "client 'a' at s.yaml:4:12 (server 'crm', key 'db/main' in sink 'vault'): both are written to the "
        "Vault secret secret/team-a/db/main at https://vault.example.com:8200",
    ]


def test_vault_keys_that_leave_the_prefix_are_refused(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: vault, key: ../team-b/db}}",
        "{name: b, secret: {sink: vault, key: /etc/db}}",
        "{name: c, secret: {sink: vault, key: db/../../x}}",
        "{name: d, secret: {sink: vault, key: ok/..x/y..}}",  # not a '..' segment
    )
    rule = "a key must stay below pathPrefix: no leading '/', no '..' segments"
    sink = "sink 'vault' (vault, mount 'secret', pathPrefix 'team-a/')"
    assert _problems(folder) == [
        f"s.yaml:4:42: clients[0].secret.key: secret key '../team-b/db' is refused by {sink}: it has a '..' "
        f"segment; {rule}",
        f"s.yaml:5:42: clients[1].secret.key: secret key '/etc/db' is refused by {sink}: it starts with '/'; "
        f"{rule}",
        f"s.yaml:6:42: clients[2].secret.key: secret key 'db/../../x' is refused by {sink}: it has a '..' "
        f"segment; {rule}",
    ]


def test_a_default_key_can_leave_the_prefix_too(folder: Path) -> None:
    (folder / "s.yaml").write_text(
        "kind: MCPServer\nname: '..'\nclients:\n  - {name: x, secret: {sink: aws}}\n"
    )
    assert _problems(folder) == [
        "s.yaml:4:12: clients[0].name: secret key '../x' is refused by sink 'aws' (aws-secrets-manager, "
        "namePrefix 'mcp/'): it has a '..' segment; a key must stay inside namePrefix: no leading '/', "
        "no '..' segments",
    ]


def test_aws_names_collide_after_the_prefix_and_arns_are_refused(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: aws, key: crm/bot}}",
        "{name: b, secret: {sink: aws-crm, key: bot}}",
        "{name: c, secret: {sink: aws-us, key: bot}}",  # another region
        "{name: d, secret: {sink: aws, key: 'arn:aws:secretsmanager:eu-west-1:1:secret:prod-db'}}",
    )
    assert _problems(folder) == [
        "s.yaml:5:23: clients[1].secret: secret destination 'bot' in sink 'aws-crm' is already used by client "
        "'a' at s.yaml:4:12 (server 'crm', key 'crm/bot' in sink 'aws'): both are written to the AWS secret "
        "mcp/crm/bot in eu-west-1",
        "s.yaml:7:40: clients[3].secret.key: secret key 'arn:aws:secretsmanager:eu-west-1:1:secret:prod-db' is "
        "refused by sink 'aws' (aws-secrets-manager, namePrefix 'mcp/'): AWS secret names allow only "
        "letters, digits and /_+=.@-; a key must stay inside namePrefix: no leading '/', no '..' segments",
    ]


@pytest.mark.parametrize(
    ("prefix", "key", "reason"),
    [
        ("team-a/", "db/main", None),
        ("team-a/", "db/./main", None),
        ("team-a/", "db..x/..y", None),
        ("", "crm/bot", None),
        ("team-a/", "../team-b/db", "it has a '..' segment"),
        ("team-a/", "db/..", "it has a '..' segment"),
        ("team-a/", "/etc/db", "it starts with '/'"),
        ("", "/db", "it starts with '/'"),
        ("team-a/.", "./db", "it makes a '..' segment with the prefix"),  # team-a/../db
    ],
)
def test_the_rule_shared_by_validate_and_the_sinks(prefix: str, key: str, reason: str | None) -> None:
    assert leaves_prefix(prefix, key=key) == reason
    assert aws_name_problem(prefix, key=key) == reason


def test_aws_names_use_only_aws_characters() -> None:
    assert aws_name_problem("mcp/", key="crm/bot_1+=.@-") is None
    for key in ("arn:aws:secretsmanager:eu-west-1:1:secret:x", "crm bot", "crm/böt"):
        assert aws_name_problem("mcp/", key=key) == "AWS secret names allow only letters, digits and /_+=.@-"


def test_command_sinks_compare_their_own_keys_only(folder: Path) -> None:
    _write(
        folder,
        "{name: a, secret: {sink: hook, key: k}}",
        "{name: b, secret: {sink: hook, key: K}}",
        "{name: c, secret: {sink: env, key: k}}",
    )
    assert len(load_manifest([str(folder)], environ={}).servers[0].clients) == 3


def test_destinations_are_checked_when_the_project_itself_is_invalid(folder: Path) -> None:
    (folder / "p.yaml").write_text(SINKS + "prune: maybe\n")
    _write(folder, "name: sync-bot", "name: sync_bot")
    problems = _problems(folder)
    assert problems[0].startswith("p.yaml:")
    assert problems[1].startswith("s.yaml:5:5: clients[1].secret: secret destination 'crm/sync_bot'")


# ---- a manifest validate refuses changes nothing -----------------------------------------------


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT_ID, KEY) as handle:
        yield handle


@pytest.mark.parametrize(
    "clients",
    [
        ("name: sync-bot", "name: sync_bot"),
        ("{name: a, secret: {sink: vault, key: ../team-b/db}}",),
        ("{name: a, secret: {sink: json, key: k}}", "{name: b, secret: {sink: json-again, key: k}}"),
    ],
)
def test_apply_of_a_refused_manifest_changes_nothing(
    emulator: RunningEmulator, folder: Path, capsys: pytest.CaptureFixture[str], clients: tuple[str, ...]
) -> None:
    _write(folder, *clients)
    for command in (["validate", str(folder)], ["apply", str(folder), "--auto-approve"]):
        assert run(command) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert "internal error" not in err
        assert "Traceback" not in err
        assert err.endswith("error: 1 problem found in the manifests\n")
    assert emulator.state()["servers"] == []
    assert sorted(os.listdir(folder)) == ["p.yaml", "s.yaml"]  # no sink file, no journal
