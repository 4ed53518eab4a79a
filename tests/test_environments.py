"""Several environments: MCP_RECONCILER_VAR_FILE, and one repository driving several Descope projects.

The repository's own manifests/ and envs/ are the layout the README's "Several environments" shows:
each environment resolves, through its var file, to its own values and sinks, and through
DESCOPE_PROJECT_ID to its own project; here each project is an emulator of its own, as each is a
GitHub environment of its own in examples/github/. The README's shell example runs as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.manifest import load_manifest, read_var_file
from reconciler.models import Manifest
from tests.conftest import ROOT, Writer

VARIABLE = "MCP_RECONCILER_VAR_FILE"
KEY = "K2-environments-key-5c1d"
# environment -> (its var file, its Descope project)
ENVIRONMENTS = {
    "staging": ("envs/staging.yaml", "P2STAGING"),
    "production": ("envs/prod.yaml", "P2PRODUCTION"),
}
DOMAINS = {"staging": "staging.acme.example", "production": "acme.example"}
SECRETS_DIRS = {"staging": ".secrets/staging", "production": ".secrets/production"}


@pytest.fixture(autouse=True)
def _no_var_file_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)


# --- MCP_RECONCILER_VAR_FILE ----------------------------------------------------------------------

PROJECT = "kind: Project\nprojectId: ${PID}\n"


@pytest.fixture
def needs_a_var(write: Writer) -> Path:
    """Manifests that only validate once PID is set, and var files that set it differently."""
    write("one.yaml", "PID: P2one\n")
    write("two.yaml", "PID: P2two\n")
    return write("m/project.yaml", PROJECT) / "m"


def resolved_project(capsys: pytest.CaptureFixture[str], *argv: str) -> str | None:
    """The project `validate` resolved (None when validation failed)."""
    code = run(["validate", *argv, "--format", "json"])
    out = capsys.readouterr().out
    return str(json.loads(out)["project"]) if code == 0 else None


def test_the_variable_names_the_var_file(
    needs_a_var: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert resolved_project(capsys, str(needs_a_var)) is None  # PID is not set
    monkeypatch.setenv(VARIABLE, str(tmp_path / "one.yaml"))
    assert resolved_project(capsys, str(needs_a_var)) == "P2one"


def test_several_files_are_separated_like_path_and_later_ones_win(
    needs_a_var: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one, two = str(tmp_path / "one.yaml"), str(tmp_path / "two.yaml")
    monkeypatch.setenv(VARIABLE, os.pathsep.join([one, two]))
    assert resolved_project(capsys, str(needs_a_var)) == "P2two"
    monkeypatch.setenv(VARIABLE, os.pathsep.join([two, one]))
    assert resolved_project(capsys, str(needs_a_var)) == "P2one"
    monkeypatch.setenv(VARIABLE, f"{os.pathsep}{one}{os.pathsep}")  # empty entries name nothing
    assert resolved_project(capsys, str(needs_a_var)) == "P2one"
    monkeypatch.setenv(VARIABLE, "")  # set but empty: no var file
    assert resolved_project(capsys, str(needs_a_var)) is None


def test_an_explicit_var_file_replaces_the_variable(
    needs_a_var: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(VARIABLE, str(tmp_path / "one.yaml"))
    assert resolved_project(capsys, str(needs_a_var), "--var-file", str(tmp_path / "two.yaml")) == "P2two"
    # Replaces, not adds to: a file only the variable names is not read.
    (tmp_path / "three.yaml").write_text("OTHER: x\n")
    assert resolved_project(capsys, str(needs_a_var), "--var-file", str(tmp_path / "three.yaml")) is None


def test_the_environment_still_wins_over_the_var_file(
    needs_a_var: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(VARIABLE, str(tmp_path / "one.yaml"))
    monkeypatch.setenv("MCP_VAR_PID", "P2seven")
    assert resolved_project(capsys, str(needs_a_var)) == "P2seven"


def test_a_missing_file_is_an_error_that_names_the_variable(
    needs_a_var: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(VARIABLE, os.pathsep.join([str(tmp_path / "one.yaml"), "envs/nowhere.yaml"]))
    assert run(["validate", str(needs_a_var)]) == 1
    err = capsys.readouterr().err
    assert f"{VARIABLE} names envs/nowhere.yaml: no such file" in err


@pytest.mark.parametrize("command", ["validate", "plan", "drift", "apply", "secrets check", "show"])
def test_every_command_that_takes_var_file_reads_the_variable(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*command.split(), "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--var-file FILE" in text
    assert f"[env: {VARIABLE}, files separated by '{os.pathsep}'; --var-file replaces it]" in text


# --- The repository's own environments ------------------------------------------------------------


def resolved(environment: str) -> Manifest:
    """The repository's manifests as an environment resolves them: its var file and its project id."""
    var_file, project = ENVIRONMENTS[environment]
    return load_manifest(
        [str(ROOT / "manifests")],
        environ={"DESCOPE_PROJECT_ID": project},
        var_values=read_var_file(str(ROOT / var_file)),
    )


def test_every_var_file_sets_the_same_names() -> None:
    """A name one environment sets and another does not would silently take the manifests' default."""
    names = {env: set(read_var_file(str(ROOT / var_file))) for env, (var_file, _) in ENVIRONMENTS.items()}
    assert names["staging"] == names["production"] == {"DOMAIN", "SECRETS_DIR", "MAX_DELETES"}
    assert sorted(path.name for path in (ROOT / "envs").iterdir()) == ["prod.yaml", "staging.yaml"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_resolves_to_its_own_project_values_and_sinks(environment: str) -> None:
    manifest = resolved(environment)
    assert manifest.project.projectId == ENVIRONMENTS[environment][1]
    sinks = {name: str(getattr(sink, "path", "")) for name, sink in manifest.project.sinks.items()}
    folder = SECRETS_DIRS[environment]
    assert sinks == {"local": f"{folder}/mcp-clients.json", "dotenv": f"{folder}/agents.env"}
    assert manifest.project.maxDeletes == {"staging": "50%", "production": "10%"}[environment]
    domain = DOMAINS[environment]
    for server in manifest.servers:
        for url in server.audienceWhitelist or []:
            host = urlsplit(url).hostname or ""
            assert host.endswith(f".{domain}"), url
            assert environment == "staging" or "staging" not in host, url


def test_the_environments_differ_only_where_the_var_files_say() -> None:
    """Same servers, clients and scopes in every environment: the staging plan previews production's."""
    staging, production = resolved("staging"), resolved("production")

    def shape(manifest: Manifest) -> dict[str, Any]:
        return {
            server.name: (
                sorted(scope.name for scope in server.approvedScopes or []),
                sorted(client.name for client in server.clients),
            )
            for server in manifest.servers
        }

    assert shape(staging) == shape(production)
    assert len(staging.servers) == 4


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout of the repository's manifests and var files, as CI has it: relative paths."""
    checkout = tmp_path / "checkout"
    for folder in ("manifests", "envs"):
        shutil.copytree(
            ROOT / folder, checkout / folder, ignore=shutil.ignore_patterns(".*")
        )  # as Git has them
    monkeypatch.chdir(checkout)
    return checkout


@pytest.fixture
def projects(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, RunningEmulator]]:
    """One emulator per environment's project, with one key for both (each GitHub environment would
    hold its own)."""
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
    with ExitStack() as stack:
        yield {
            env: stack.enter_context(running_emulator(EmulatorConfig(project_id=project, management_key=KEY)))
            for env, (_, project) in ENVIRONMENTS.items()
        }


def enter(monkeypatch: pytest.MonkeyPatch, environment: str, projects: dict[str, RunningEmulator]) -> None:
    """What a GitHub environment and the workflows' matrix give a job: the var file, the project."""
    var_file, project = ENVIRONMENTS[environment]
    monkeypatch.setenv(VARIABLE, var_file)
    monkeypatch.setenv("DESCOPE_PROJECT_ID", project)
    monkeypatch.setenv("DESCOPE_BASE_URL", projects[environment].base_url)


def test_validate_plan_and_apply_each_environment_against_its_own_project(
    repository: Path,
    projects: dict[str, RunningEmulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for environment, (var_file, project) in ENVIRONMENTS.items():
        enter(monkeypatch, environment, projects)
        assert run(["validate", "manifests", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["project"] == project

        assert run(["plan", "manifests", "--format", "json", "--out", f"{environment}.json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["project"] == project
        assert plan["madeFrom"]["varFiles"] == [var_file]  # recorded, so apply checks against it
        assert plan["summary"]["create"] == 9
        created = json.dumps(plan["changes"])
        assert f"calendar.mcp.{DOMAINS[environment]}/mcp" in created
        if environment == "production":
            assert "staging.acme.example" not in created

        monkeypatch.delenv(VARIABLE)  # apply checks the plan against the var files it records
        assert run(["apply", f"{environment}.json"]) == 0
        capsys.readouterr()

    for environment, emulator in projects.items():
        servers = emulator.state()["servers"]
        assert len(servers) == 4
        audiences = [url for server in servers for url in server.get("audienceWhitelist", [])]
        assert all(f".{DOMAINS[environment]}/" in f"{url}/" for url in audiences), audiences
        if environment == "production":
            assert not any("staging" in url for url in audiences)
        # Each environment's client secrets went to its own sinks, and only there.
        folder = repository / "manifests" / SECRETS_DIRS[environment]  # relative to project.yaml
        held = json.loads((folder / "mcp-clients.json").read_text())
        assert len(held) == 4
        live = {c["clientId"] for s in servers for c in s.get("clients", [])}
        assert {entry["clientId"] for entry in held.values()} <= live
        assert "CALENDAR_REPORTING_CLIENT_SECRET=" in (folder / "agents.env").read_text()

    assert not (repository / "manifests" / ".secrets" / "mcp-clients.json").exists()  # no default sink

    # Each project is now what its environment says: nothing left to plan in either.
    for environment in ENVIRONMENTS:
        enter(monkeypatch, environment, projects)
        assert run(["plan", "manifests", "--detailed-exitcode"]) == 0
        assert run(["drift", "manifests", "--detailed-exitcode"]) == 0
        # The other environment's values against this project: everything would change.
        other = next(var for env, (var, _) in ENVIRONMENTS.items() if env != environment)
        assert run(["plan", "manifests", "--var-file", other, "--detailed-exitcode"]) == 2
    capsys.readouterr()


def test_show_without_manifests_ignores_the_variable(
    repository: Path,
    projects: dict[str, RunningEmulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The variable is for manifests: `show plan.json` alone checks none, and is no usage error."""
    enter(monkeypatch, "staging", projects)
    assert run(["plan", "manifests", "--out", "plan.json"]) == 0
    assert run(["show", "plan.json"]) == 0
    assert run(["show", "plan.json", "manifests"]) == 0  # checked against the variable's var file
    assert "made from manifests --var-file envs/staging.yaml" in capsys.readouterr().err
    assert run(["show", "plan.json", "manifests", "--var-file", "envs/prod.yaml"]) == 1  # not its values
    assert run(["show", "plan.json", "--var-file", "envs/prod.yaml"]) == 1  # a usage error, as before


# --- The README's example -------------------------------------------------------------------------


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Several environments\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return str(block)


def test_the_readme_example_runs_as_written(repository: Path, tmp_path: Path) -> None:
    """Under bash, with the installed command on PATH and an emulator standing in for the project the
    example names (DESCOPE_BASE_URL and the key are what a real run would have in its environment)."""
    script = readme_example()
    project = re.search(r"DESCOPE_PROJECT_ID=(\w+)", script)
    assert project is not None
    config = EmulatorConfig(project_id=project.group(1), management_key=KEY)
    with running_emulator(config) as emulator:
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "DESCOPE_MANAGEMENT_KEY": KEY,
            "DESCOPE_BASE_URL": emulator.base_url,
            "MCP_RECONCILER_LOCK_DIR": str(tmp_path / "locks"),
            "MCP_RECONCILER_EMULATOR_STRICT": "1",
        }
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=repository, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Manifests are valid: 4 servers, 5 clients") == 2
    assert "Plan: 9 to create" in result.stdout + result.stderr
    assert "made from manifests/ --var-file envs/staging.yaml" in result.stderr
    plan = json.loads((repository / "staging-plan.json").read_text())
    assert plan["madeFrom"]["varFiles"] == ["envs/staging.yaml"]
    assert "calendar.mcp.staging.acme.example" in json.dumps(plan["changes"])
