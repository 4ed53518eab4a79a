"""The validate command end to end: exit codes, every problem in one run, GitHub annotations."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reconciler.cli import run
from tests.conftest import DATA, EXAMPLES, ROOT, Writer

BROKEN = DATA / "broken"

EXPECTED_BROKEN = """\
tests/data/broken/duplicate-keys.yaml:3:1: duplicate key 'name'
tests/data/broken/nested/clients.yaml:2:9: server: no MCPServer named 'calender' (did you mean 'calendar'?)
tests/data/broken/nested/clients.yaml:8:7: tags: expected a list, got a string
tests/data/broken/nested/clients.yaml:10:9: secret.sink: sink 'nowhere' is not declared in the Project's sinks (files, vault)
tests/data/broken/nested/clients.yaml:15:9: secret: secret destination 'shared' in sink 'vault' is already used by client 'agent' at tests/data/broken/servers.yaml:18:11
tests/data/broken/project.yaml:2:12: projectId: variable 'TEST_PROJECT_ID' is not set (as MCP_VAR_TEST_PROJECT_ID or in a --var-file) and has no default
tests/data/broken/project.yaml:3:8: prune: expected true or false, got a string
tests/data/broken/project.yaml:4:14: defaultSink: sink 'vualt' is not declared in the Project's sinks (files, vault) (did you mean 'vault'?)
tests/data/broken/project.yaml:8:10: sinks.vault.url: 'vault.internal:8200' must be an http:// or https:// URL
tests/data/broken/project.yaml:12:5: sinks.files.formt: unknown field 'formt' (did you mean 'format'?)
tests/data/broken/second-project.yaml:1:7: kind: a second Project document; exactly one is allowed (first at tests/data/broken/project.yaml:1:1)
tests/data/broken/servers.yaml:3:1: descripton: unknown field 'descripton' (did you mean 'description'?)
tests/data/broken/servers.yaml:5:5: audienceWhitelist[0]: 'calendar.example.com/mcp' is not an absolute URL (expected e.g. https://host/path)
tests/data/broken/servers.yaml:9:15: approvedScopes[1].optional: expected true or false, got a string
tests/data/broken/servers.yaml:11:5: approvedCallbackUrls[0]: 'https://agents.example.com/cb#frag' must not contain a fragment (#...)
tests/data/broken/servers.yaml:13:31: sessionSettings.sessionTokenExpirationUnit: 'fortnights' is not one of 'seconds', 'minutes', 'hours', 'days', 'weeks'
tests/data/broken/servers.yaml:16:29: clients[0].scopes[1]: 'calendar:wrte' is not an approved scope of server 'calendar' (did you mean 'calendar:write'?)
tests/data/broken/servers.yaml:18:11: clients[1].name: duplicate client name 'agent' in server 'calendar' (first defined at tests/data/broken/servers.yaml:15:11)
tests/data/broken/servers.yaml:23:7: name: duplicate server name 'calendar' (first defined at tests/data/broken/servers.yaml:1:1)
tests/data/broken/servers.yaml:25:7: kind: unknown kind 'MCPServr' (did you mean 'MCPServer'?); expected one of Project, MCPServer, MCPServerClient
tests/data/broken/syntax.yaml:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)
error: 21 problems found in the manifests
"""


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MCP_VAR_TEST_PROJECT_ID", "GITHUB_ACTIONS")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_examples_are_valid_through_the_console_entry_point() -> None:
    result = _cli("validate", "manifests")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Manifests are valid: 4 servers, 5 clients, project P2MCPRECONCILERDEMO.\n"
    assert result.stderr == ""


def test_every_problem_in_the_broken_folder_is_reported_in_one_run() -> None:
    result = _cli("validate", "tests/data/broken")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == EXPECTED_BROKEN


def test_inside_github_actions_problems_become_at_most_ten_annotations() -> None:
    result = _cli("validate", "tests/data/broken", env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 10
    assert lines[0] == "::error file=tests/data/broken/duplicate-keys.yaml,line=3,col=1::duplicate key 'name'"
    assert lines[4] == (
        "::error file=tests/data/broken/nested/clients.yaml,line=15,col=9::secret: secret destination 'shared' "
        "in sink 'vault' is already used by client 'agent' at tests/data/broken/servers.yaml:18:11"
    )
    assert lines[-1] == "::error::12 more manifest problems are listed in the log"
    assert result.stderr == EXPECTED_BROKEN


def test_default_path_is_the_manifests_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert run(["validate"]) == 0
    assert "4 servers, 5 clients" in capsys.readouterr().out


def test_var_file_values_apply_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["validate", str(EXAMPLES), "--var-file", str(ROOT / "envs" / "prod.yaml")]) == 0
    monkeypatch.setenv("DESCOPE_PROJECT_ID", "P2fromEnv")
    assert run(["validate", str(EXAMPLES), "--var-file", str(ROOT / "envs" / "prod.yaml")]) == 0
    assert "project P2fromEnv." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "no/such/folder"], "error: no/such/folder: no such file or directory"),
        (["validate", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_errors_exit_1_not_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == 1
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1]
    assert "Traceback" not in err


def test_an_empty_folder_is_an_error(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", str(tmp_path)]) == 1
    assert "no manifest files (*.yaml, *.yml) found in" in capsys.readouterr().err


def test_a_bad_var_file_is_reported_with_its_position(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write("vars.yaml", "DOMAIN: [not, scalar]\n")
    assert run(["validate", str(EXAMPLES), "--var-file", str(folder / "vars.yaml")]) == 1
    assert capsys.readouterr().err.startswith(
        f"{folder / 'vars.yaml'}:1:9: DOMAIN: values must be scalars, not lists or mappings\n"
    )


def test_destinations_that_collide_once_normalised_fail_cleanly_through_the_entry_point(
    write: Writer,
) -> None:
    write(
        "p.yaml",
        "kind: Project\nprojectId: P2\ndefaultSink: env\nsinks:\n"
        "  env: {type: file, path: .secrets/agents.env, format: dotenv}\n"
        "  vault: {type: vault, url: 'https://vault.example.com', pathPrefix: team-a/}\n",
    )
    folder = write(
        "s.yaml",
        "kind: MCPServer\nname: crm\nclients:\n  - name: sync-bot\n  - name: sync_bot\n"
        "  - {name: db, secret: {sink: vault, key: ../team-b/db}}\n",
    )
    result = _cli("validate", str(folder))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith(f"{folder}/s.yaml:5:5: clients[1].secret: secret destination 'crm/sync_bot'")
    assert lines[0].endswith(f"both are written to the variable CRM_SYNC_BOT in {folder}/.secrets/agents.env")
    assert lines[1].startswith(f"{folder}/s.yaml:6:43: clients[2].secret.key: secret key '../team-b/db' is ")
    assert lines[2] == "error: 2 problems found in the manifests"
