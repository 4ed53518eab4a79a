"""Paths that do not depend on the working directory (issue 18).

Relative paths in a manifest count from the file that declares them (a file sink's ``path``, a command
sink's program), after ``${VAR}`` substitution; the state folder (the journal) lives beside the Project
manifest; a folder created for it gets a ``.gitignore``; messages about a path name it resolved; and a
``projectId`` that disagrees with ``DESCOPE_PROJECT_ID`` is an error naming both. The CLI tests run the
command from the repository's root, from inside ``manifests/`` and from an unrelated folder, against the
emulator over HTTP, and check that every run uses one sink file and one journal, and leaves no state
folder anywhere else.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.errors import JournalError, ManifestError
from reconciler.journal import (
    GITIGNORE_TEXT,
    JOURNAL_NAME,
    STATE_DIR_NAME,
    Journal,
    journal_path,
    read_events,
)
from reconciler.manifest import load_manifest
from reconciler.models import resolve_sink_paths
from tests.conftest import serving

KEY = "K2-paths-key-4d1e"
PROJECT = "P2PATHS"

PROJECT_YAML = f"""\
kind: Project
projectId: {PROJECT}
defaultSink: files
sinks:
  files:
    type: file
    path: ${{SECRETS_DIR}}/clients.json
"""
SERVER_YAML = """\
kind: MCPServer
name: s
approvedScopes: [{name: read}]
clients:
  - {name: a, scopes: [read]}
"""


@dataclass(frozen=True)
class Repo:
    """A checkout: ``manifests/`` (Project and server in files of their own) and ``envs/prod.yaml``,
    whose SECRETS_DIR (relative, with ``..``) puts the file sink in ``<repo>/.secrets/prod``."""

    root: Path
    elsewhere: Path  # a folder outside the checkout

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def var_file(self) -> Path:
        return self.root / "envs" / "prod.yaml"

    @property
    def sink(self) -> Path:
        return self.root / ".secrets" / "prod" / "clients.json"

    @property
    def state(self) -> Path:
        return self.manifests / STATE_DIR_NAME

    @property
    def journal(self) -> Path:
        return self.state / JOURNAL_NAME

    def add_client(self, name: str) -> None:
        with (self.manifests / "servers" / "s.yaml").open("a") as stream:
            stream.write(f"  - {{name: {name}, scopes: [read]}}\n")

    def state_folders(self) -> list[Path]:
        """Every state folder under the checkout and the other folder."""
        found = [*self.root.rglob(STATE_DIR_NAME), *self.elsewhere.rglob(STATE_DIR_NAME)]
        return sorted(found)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    (root / "manifests" / "servers").mkdir(parents=True)
    (root / "envs").mkdir()
    (root / "manifests" / "project.yaml").write_text(PROJECT_YAML)
    (root / "manifests" / "servers" / "s.yaml").write_text(SERVER_YAML)
    (root / "envs" / "prod.yaml").write_text("SECRETS_DIR: ../.secrets/prod\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return Repo(root, elsewhere)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    for name in ("MCP_RECONCILER_JOURNAL", "MCP_RECONCILER_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def live_secrets(emulator: RunningEmulator) -> dict[str, str]:
    return {
        f"{s['name']}/{c['name']}": c["secret"]
        for s in emulator.state()["servers"]
        for c in s.get("clients", [])
    }


def held_secrets(sink: Path) -> dict[str, str]:
    return {key: entry["clientSecret"] for key, entry in json.loads(sink.read_text()).items()}


def applies(journal: Path) -> int:
    return sum(event["event"] == "apply-started" for event in read_events(journal))


# ---- the reported scenario: manifests/ + envs/prod.yaml, run from three places ----------------------


def test_the_same_sink_file_and_journal_from_the_root_from_manifests_and_from_elsewhere(
    repo: Repo,
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo.root)
    assert run(["apply", "manifests", "--var-file", "envs/prod.yaml", "--auto-approve"]) == 0
    assert held_secrets(repo.sink) == live_secrets(emulator)

    # From inside manifests/, as reported: the secrets are found, and the line names the file.
    monkeypatch.chdir(repo.manifests)
    capsys.readouterr()
    assert run(["secrets", "check", ".", "--var-file", "../envs/prod.yaml"]) == 0
    assert f'     match  client "s/a" -> sink files ({repo.sink})' in capsys.readouterr().out
    repo.add_client("b")
    assert run(["apply", ".", "--var-file", "../envs/prod.yaml", "--auto-approve"]) == 0

    # From a folder outside the checkout, with absolute paths.
    monkeypatch.chdir(repo.elsewhere)
    repo.add_client("c")
    manifests, var_file = str(repo.manifests), str(repo.var_file)
    assert run(["apply", manifests, "--var-file", var_file, "--auto-approve"]) == 0
    capsys.readouterr()
    assert run(["secrets", "check", manifests, "--var-file", var_file]) == 0
    assert "3 of 3 secrets are in their sinks" in capsys.readouterr().out

    assert held_secrets(repo.sink) == live_secrets(emulator)
    assert sorted(live_secrets(emulator)) == ["s/a", "s/b", "s/c"]
    assert applies(repo.journal) == 3  # one journal for the three runs
    assert repo.state_folders() == [repo.state]  # beside the Project file, and nowhere else
    assert not (repo.manifests / ".secrets").exists()
    assert not (repo.elsewhere / ".secrets").exists()


def test_secrets_check_names_the_resolved_file_and_fix_writes_it_there(
    repo: Repo,
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo.root)
    assert run(["apply", "manifests", "--var-file", "envs/prod.yaml", "--auto-approve"]) == 0
    repo.sink.write_text("{}\n")
    monkeypatch.chdir(repo.manifests)
    capsys.readouterr()
    assert run(["secrets", "check", ".", "--var-file", "../envs/prod.yaml"]) == 3
    assert f'   missing  client "s/a" -> sink files ({repo.sink})' in capsys.readouterr().out
    assert run(["secrets", "check", ".", "--var-file", "../envs/prod.yaml", "--fix"]) == 0
    assert f'     fixed  client "s/a" -> sink files ({repo.sink})' in capsys.readouterr().out
    assert held_secrets(repo.sink) == live_secrets(emulator)
    assert repo.state_folders() == [repo.state]


# ---- saved plans -------------------------------------------------------------------------------------


def test_a_plan_saved_in_one_folder_and_applied_from_another_uses_the_same_journal_and_sink(
    repo: Repo,
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo.root)
    assert run(["plan", "manifests", "--var-file", "envs/prod.yaml", "--out", "plan.json"]) == 0
    monkeypatch.chdir(repo.manifests)
    assert run(["apply", "../plan.json", ".", "--var-file", "../envs/prod.yaml"]) == 0
    assert held_secrets(repo.sink) == live_secrets(emulator)
    assert applies(repo.journal) == 1

    # The next one is applied from the root, with the paths the plan recorded.
    repo.add_client("b")
    monkeypatch.chdir(repo.root)
    assert run(["plan", "manifests", "--var-file", "envs/prod.yaml", "--out", "plan.json"]) == 0
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 0
    assert "made from manifests --var-file envs/prod.yaml" in capsys.readouterr().err

    # And one from outside the checkout, naming the manifests.
    repo.add_client("c")
    assert run(["plan", "manifests", "--var-file", "envs/prod.yaml", "--out", "plan.json"]) == 0
    monkeypatch.chdir(repo.elsewhere)
    plan_file, manifests, var_file = str(repo.root / "plan.json"), str(repo.manifests), str(repo.var_file)
    assert run(["apply", plan_file, manifests, "--var-file", var_file]) == 0

    assert held_secrets(repo.sink) == live_secrets(emulator)
    assert len(live_secrets(emulator)) == 3
    assert applies(repo.journal) == 3
    assert repo.state_folders() == [repo.state]


# ---- resolving manifest paths ------------------------------------------------------------------------


def test_file_sink_paths_count_from_the_declaring_file_after_substitution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "deep" / "manifests"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: rel\nsinks:\n"
        "  rel: {type: file, path: '${DIR}/rel.json'}\n"
        f"  abs: {{type: file, path: '{tmp_path}/abs.json'}}\n"
        "  home: {type: file, path: '~/home.json'}\n"
        "  tool: {type: command, command: [./bin/store, --to, out]}\n"
        "  onpath: {type: command, command: [store-secret]}\n"
    )
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest(["deep"], environ={"MCP_VAR_DIR": "../out"})
    assert manifest.folder == folder
    settings = manifest.sink_settings()
    assert settings["rel"]["path"] == str(tmp_path / "deep" / "out" / "rel.json")
    assert settings["abs"]["path"] == str(tmp_path / "abs.json")  # absolute: as it is
    assert settings["home"]["path"] == str(folder / "~" / "home.json")  # ~ was never expanded
    assert settings["tool"]["command"] == [str(folder / "bin" / "store"), "--to", "out"]
    assert settings["onpath"]["command"] == ["store-secret"]  # a bare name is looked up on PATH
    # What plans digest is the manifest as written: the same from any checkout or working directory.
    assert manifest.project.sink_settings()["rel"]["path"] == "../out/rel.json"
    assert manifest.sink_label("rel") == f"rel ({tmp_path / 'deep' / 'out' / 'rel.json'})"
    assert manifest.sink_label("tool") == f"tool (runs {folder / 'bin' / 'store'})"


def test_resolving_leaves_other_sinks_alone() -> None:
    vault = {"type": "vault", "url": "https://vault.example", "pathPrefix": "mcp/"}
    assert resolve_sink_paths(vault, Path("/base")) == vault


def test_the_same_manifests_load_the_same_from_any_working_directory(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"SECRETS_DIR": "../.secrets/prod"}
    seen = set()
    for cwd, path in ((repo.root, "manifests"), (repo.manifests, "."), (repo.elsewhere, str(repo.manifests))):
        monkeypatch.chdir(cwd)
        manifest = load_manifest([path], environ={}, var_values=values)
        seen.add((manifest.folder, json.dumps(manifest.sink_settings())))
    assert seen == {(repo.manifests, json.dumps({"files": {"type": "file", "path": str(repo.sink)}}))}


def test_validate_compares_file_sinks_where_they_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: a\nsinks:\n"
        "  a: {type: file, path: .secrets/x.json}\n"
        "  b: {type: file, path: ../m/.secrets/x.json, format: dotenv}\n"
    )
    monkeypatch.chdir(tmp_path.parent)  # neither folder's parent: the working directory plays no part
    assert run(["validate", str(folder)]) == 1
    expected = f"sink 'b' writes {folder / '.secrets' / 'x.json'} as dotenv, but sink 'a'"
    assert expected in capsys.readouterr().err


def test_a_command_sink_program_is_found_from_any_working_directory(
    repo: Repo, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = repo.manifests / "bin" / "store"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\ncat > "$(dirname "$0")/got-$MCP_CLIENT_NAME"\n')
    script.chmod(0o755)
    (repo.manifests / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: tool\n"
        "sinks:\n  tool: {type: command, command: [./bin/store]}\n"
    )
    monkeypatch.chdir(repo.elsewhere)
    assert run(["apply", str(repo.manifests), "--auto-approve"]) == 0
    assert (script.parent / "got-a").read_text() == live_secrets(emulator)["s/a"] + "\n"


# ---- the state folder ---------------------------------------------------------------------------------


def test_the_state_folder_is_beside_the_project_file_with_a_gitignore(tmp_path: Path) -> None:
    assert journal_path(tmp_path / "m") == tmp_path / "m" / STATE_DIR_NAME / JOURNAL_NAME
    Journal(journal_path(tmp_path / "m"), project=PROJECT).close()
    state = tmp_path / "m" / STATE_DIR_NAME
    assert (state / ".gitignore").read_text() == GITIGNORE_TEXT
    assert "*" in GITIGNORE_TEXT.splitlines()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_an_existing_folder_gets_no_gitignore(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    Journal(tmp_path / "logs" / "journal.jsonl", project=PROJECT).close()
    assert not (tmp_path / "logs" / ".gitignore").exists()


def test_state_dir_and_journal_override_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = tmp_path / "m"
    assert journal_path(manifests, state_dir=Path("state")) == tmp_path / "state" / JOURNAL_NAME
    assert journal_path(manifests, journal=Path("j.jsonl")) == tmp_path / "j.jsonl"
    both = journal_path(manifests, journal=Path("j.jsonl"), state_dir=Path("state"))
    assert both == tmp_path / "j.jsonl"  # the file named wins over the folder


def test_the_state_dir_option_and_variable_move_the_journal(
    repo: Repo, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.root)
    args = ["apply", "manifests", "--var-file", "envs/prod.yaml", "--auto-approve"]
    assert run([*args, "--state-dir", str(repo.elsewhere / "state")]) == 0
    assert applies(repo.elsewhere / "state" / JOURNAL_NAME) == 1
    assert (repo.elsewhere / "state" / ".gitignore").read_text() == GITIGNORE_TEXT
    repo.add_client("b")
    monkeypatch.setenv("MCP_RECONCILER_STATE_DIR", str(repo.elsewhere / "state"))
    assert run(args) == 0
    assert applies(repo.elsewhere / "state" / JOURNAL_NAME) == 2
    repo.add_client("c")
    assert run([*args, "--journal", "j.jsonl"]) == 0  # --journal wins, relative to the working directory
    assert applies(repo.root / "j.jsonl") == 1
    assert not repo.state.exists()


def test_a_journal_error_names_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("blocker").write_text("")
    with pytest.raises(JournalError) as caught:
        Journal(Path("blocker") / "journal.jsonl", project=PROJECT)
    assert f"the journal {tmp_path / 'blocker' / 'journal.jsonl'}:" in str(caught.value)
    assert f"{tmp_path / 'blocker'} is a file, not a folder" in str(caught.value)


def test_a_file_sink_error_names_the_resolved_path(
    repo: Repo,
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo.sink.mkdir(parents=True)  # a folder where the file should be
    monkeypatch.chdir(repo.manifests)
    assert run(["apply", ".", "--var-file", "../envs/prod.yaml", "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert f"sink 'files' (file): {repo.sink} is a folder, not a file" in err


def test_a_crash_log_never_makes_a_state_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MCP_RECONCILER_JOURNAL", "MCP_RECONCILER_STATE_DIR", "MCP_RECONCILER_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("reconciler.cli.validate.load", broken)
    assert run(["validate", "."]) == 1
    assert f"the traceback is in {tmp_path / 'tmp'}{os.sep}mcp-reconciler-crash-" in capsys.readouterr().err
    assert os.listdir(tmp_path / "cwd") == []


# ---- projectId and DESCOPE_PROJECT_ID -----------------------------------------------------------------


def test_a_project_id_that_differs_from_the_environment_is_an_error_naming_both(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESCOPE_PROJECT_ID", "P2OTHER")
    monkeypatch.chdir(repo.root)
    for command in ("validate", "plan"):
        assert run([command, "manifests", "--var-file", "envs/prod.yaml"]) == 1
        err = capsys.readouterr().err
        assert (
            f"manifests/project.yaml:2:12: projectId: projectId is '{PROJECT}', but DESCOPE_PROJECT_ID" in err
        )
        assert "is 'P2OTHER' in the environment" in err
        assert "Write 'projectId: ${DESCOPE_PROJECT_ID}'" in err
        assert f"unset DESCOPE_PROJECT_ID (or set it to '{PROJECT}')" in err


@pytest.mark.parametrize(
    "written", ["${DESCOPE_PROJECT_ID}", "${DESCOPE_PROJECT_ID:-P2DEFAULT}", "P2SAME", "'P2SAME'"]
)
def test_no_conflict_when_the_manifest_takes_the_id_from_the_environment_or_agrees(
    tmp_path: Path, written: str
) -> None:
    (tmp_path / "p.yaml").write_text(f"kind: Project\nprojectId: {written}\n")
    manifest = load_manifest([str(tmp_path)], environ={"DESCOPE_PROJECT_ID": "P2SAME"})
    assert manifest.project.projectId == "P2SAME"


def test_without_the_variable_the_manifest_says_which_project(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("kind: Project\nprojectId: P2ONLY\n")
    assert load_manifest([str(tmp_path)], environ={}).project.projectId == "P2ONLY"
    assert load_manifest([str(tmp_path)], environ={"DESCOPE_PROJECT_ID": ""}).project.projectId == "P2ONLY"


def test_the_conflict_is_one_problem_among_the_others(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("kind: Project\nprojectId: P2A\ndefaultSink: nowhere\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(tmp_path)], environ={"DESCOPE_PROJECT_ID": "P2B"})
    messages = [problem.message for problem in caught.value.problems]
    assert len(messages) == 2
    assert any("'P2A'" in message and "'P2B'" in message for message in messages)
