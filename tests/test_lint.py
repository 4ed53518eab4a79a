"""`lint` and the security findings of `plan`: where a finding points, every output format, --fail-on
and the policy's failOn, new/existing/resolved in a plan against a live project, and rules from plugins.

The rules themselves are tested one by one in tests/test_rules.py, the policy in tests/test_policy.py,
SARIF in tests/test_sarif.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from reconciler.cli import run
from reconciler.errors import ExitCode
from reconciler.rules import BUILTIN_RULES, catalogue_markdown
from tests.conftest import ROOT, Writer, project_yaml, serving

PROJECT = "P2LINTTEST"
KEY = "K2-lint-test-key-3f9a"
SCHEMAS = ROOT / "reconciler" / "schemas"
SCRIPT = Path(sys.executable).parent / "mcp-reconciler"

RISKY_SERVER = """kind: MCPServer
name: calendar
audienceWhitelist:
  - https://calendar.example.com/mcp
approvedScopes:
  - name: calendar:read
approvedCallbackUrls:
  - https://agents.example.com/cb
  - http://agents.example.com/insecure
cimdSettings:
  enabled: true
  domainPolicies:
    policies:
      - domainPattern: "*.com"
        enabled: true
"""
SAFE_SERVER = """kind: MCPServer
name: calendar
audienceWhitelist:
  - https://calendar.example.com/mcp
approvedScopes:
  - name: calendar:read
approvedCallbackUrls:
  - https://agents.example.com/cb
  - http://127.0.0.1:8976/cb
"""


def validator(name: str) -> jsonschema.Draft202012Validator:
    resources = [
        (json.loads(p.read_text())["$id"], Resource.from_contents(json.loads(p.read_text())))
        for p in SCHEMAS.glob("*.schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()), registry=registry)


def lint(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(["lint", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def risky(write: Writer) -> Path:
    write("m/project.yaml", project_yaml(PROJECT))
    return write("m/servers/calendar.yaml", RISKY_SERVER) / "m"


# --- lint ----------------------------------------------------------------------------------------------


def test_lint_points_at_the_field_of_each_finding_worst_first(
    risky: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = lint(capsys, str(risky), "--fail-on", "never")
    assert code == ExitCode.OK
    lines = out.splitlines()
    file = str(risky / "servers" / "calendar.yaml")
    # the pattern "*.com" is on line 14, column 24; the http URL on line 9, column 5
    assert lines[0].startswith(f"{file}:14:24: high MCP002 cimd-broad-domain: ")
    assert lines[1].startswith(f"{file}:9:5: high MCP007 callback-plain-http: ")
    assert lines[-1].startswith("2 security findings (2 high)")


def test_lint_fails_at_high_by_default_and_says_why(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = lint(capsys, str(risky))
    assert code == ExitCode.POLICY
    assert int(code) == 4
    assert "2 security findings at or above high" in err


def test_lint_passes_safe_manifests_and_loopback_http(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/calendar.yaml", SAFE_SERVER) / "m"
    code, out, _ = lint(capsys, str(folder), "--fail-on", "low")
    assert code == ExitCode.OK
    assert out == "No security findings.\n"


@pytest.mark.parametrize(("threshold", "expected"), [("critical", 0), ("never", 0), ("high", 4), ("low", 4)])
def test_fail_on_chooses_the_threshold(
    risky: Path, capsys: pytest.CaptureFixture[str], threshold: str, expected: int
) -> None:
    assert lint(capsys, str(risky), "--fail-on", threshold)[0] == expected


def test_the_policy_s_fail_on_is_the_default_and_the_option_wins(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    write("m/project.yaml", project_yaml(PROJECT) + "policy:\n  failOn: never\n")
    folder = write("m/servers/calendar.yaml", RISKY_SERVER) / "m"
    assert lint(capsys, str(folder))[0] == ExitCode.OK
    assert lint(capsys, str(folder), "--fail-on", "high")[0] == ExitCode.POLICY


def test_an_exception_accepts_a_finding_with_its_reason_and_it_fails_nothing(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = (
        "policy:\n  exceptions:\n"
        "    - {rule: MCP002, server: calendar, reason: vendor portal until Q3 (SEC-9)}\n"
        "    - {rule: MCP007, server: calendar, reason: internal network only}\n"
    )
    write("m/project.yaml", project_yaml(PROJECT) + policy)
    folder = write("m/servers/calendar.yaml", RISKY_SERVER) / "m"
    code, out, _ = lint(capsys, str(folder), "--fail-on", "low")
    assert code == ExitCode.OK
    assert "[accepted by the policy: vendor portal until Q3 (SEC-9)]" in out
    assert out.splitlines()[-1] == "0 security findings; 2 accepted by the policy's exceptions."


def test_lint_json_is_its_schema_s(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint(capsys, str(risky), "--format", "json")
    assert code == ExitCode.POLICY
    body = json.loads(out)
    validator("lint.schema.json").validate(body)
    assert body["failed"] is True
    assert body["failOn"] == "high"
    assert body["counts"] == {"low": 0, "medium": 0, "high": 2, "critical": 0, "excepted": 0}
    first = body["findings"][0]
    assert first["rule"] == "MCP002"
    assert first["field"] == "cimdSettings.domainPolicies.policies[0].domainPattern"
    assert first["location"]["line"] == 14
    assert first["status"] is None
    assert {"MCP001", "MCP002", "MCP007"} <= set(body["rules"])


def test_lint_markdown_lists_findings_worst_first(risky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = lint(capsys, str(risky), "--format", "markdown", "--fail-on", "never")
    assert out.startswith("<!-- mcp-reconciler:lint project=")
    assert out.index("MCP002") < out.index("MCP007")
    assert "| high | 2 |" in out


def test_lint_refuses_invalid_manifests_like_validate(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/x.yaml", "kind: MCPServer\nname: x\nskipConsentScreen: maybe\n") / "m"
    code, _, err = lint(capsys, str(folder))
    assert code == ExitCode.ERROR
    assert "x.yaml:3:" in err
    assert "Traceback" not in err


def test_a_finding_s_message_with_control_characters_is_shown_escaped(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    server = SAFE_SERVER.replace("http://127.0.0.1:8976/cb", '"http://evil.example.com/\\u001b[2Jcb"')
    folder = write("m/servers/calendar.yaml", server) / "m"
    _, out, _ = lint(capsys, str(folder), "--fail-on", "never")
    assert "\x1b" not in out
    assert "\\x1b[2J" in out


# --- plan -----------------------------------------------------------------------------------------------


def plan_json(capsys: pytest.CaptureFixture[str], folder: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = run(["plan", str(folder), "--format", "json", *extra])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_plan_marks_findings_new_existing_and_resolved(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    live_server = RISKY_SERVER  # applied first: MCP002 and MCP007 are live
    folder = write("m/servers/calendar.yaml", live_server) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        applied(folder, capsys)
        # the change: fixes the CIMD pattern, keeps the http URL, adds a wildcard callback
        changed = live_server.replace('domainPattern: "*.com"', "domainPattern: agents.example.com").replace(
            "  - https://agents.example.com/cb\n",
            "  - https://agents.example.com/cb\n  - https://*.example.com/cb\n",
        )
        (folder / "servers" / "calendar.yaml").write_text(changed)
        code, body = plan_json(capsys, folder)
    assert code == 0
    validator("plan.schema.json").validate(body)
    status = {(f["rule"], f["detail"]): f["status"] for f in body["findings"]}
    assert status == {
        ("MCP009", "https://*.example.com/cb"): "new",
        ("MCP007", "http://agents.example.com/insecure"): "existing",
        ("MCP002", "*.com"): "resolved",
    }


def test_plan_fails_on_new_findings_only(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/calendar.yaml", RISKY_SERVER) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        code, body = plan_json(capsys, folder, "--fail-on", "high")
        assert code == ExitCode.POLICY  # both are new: nothing is live yet
        assert {f["status"] for f in body["findings"]} == {"new"}
        applied(folder, capsys)
        code, body = plan_json(capsys, folder, "--fail-on", "high")
        assert code == ExitCode.OK  # the same findings, now existing: this change brings none
        assert {f["status"] for f in body["findings"]} == {"existing"}


def test_plan_text_and_markdown_show_the_new_findings_first(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/calendar.yaml", RISKY_SERVER) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        run(["plan", str(folder)])
        text = capsys.readouterr().out
        run(["plan", str(folder), "--format", "markdown"])
        markdown = capsys.readouterr().out
    assert "Security findings: 2 new (2 high), 0 existing (none), 0 resolved." in text
    assert "  new: " in text
    assert "> [!CAUTION]\n> This change brings 2 security findings (2 high)" in markdown
    assert markdown.index("### Security findings this change brings (2)") < markdown.index("### Changes")


# --- plugins ----------------------------------------------------------------------------------------------

PLUGIN = """
from reconciler.findings import Hit, Reference, Rule


def _no_description(subject, params):
    if not subject.fields.get("description"):
        yield Hit("the server has no description", ("description",), "")


RULES = [
    Rule(
        id="ACME001",
        name="server-needs-description",
        severity="low",
        applies_to="server",
        summary="A server has no description",
        rationale="Reviewers need to know what a server is for.",
        fix="Write a description.",
        references=(Reference("ACME handbook", "https://acme.example/handbook"),),
        check=_no_description,
    )
]
"""


def install_plugin(where: Path, *, value: str = "acme_rules:RULES", module: str = PLUGIN) -> dict[str, str]:
    """A package with an entry point in mcp_reconciler.rules, found through PYTHONPATH, as pip installs it."""
    where.mkdir(parents=True)
    (where / "acme_rules.py").write_text(module)
    info = where / "acme_rules-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mcp_reconciler.rules]\nacme = {value}\n")
    return {**os.environ, "PYTHONPATH": str(where)}


def test_a_plugin_s_rules_run_with_the_built_in_ones(risky: Path, tmp_path: Path) -> None:
    env = install_plugin(tmp_path / "site")
    done = subprocess.run(
        [str(SCRIPT), "lint", str(risky), "--format", "json", "--fail-on", "never"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert "ACME001" in body["rules"]
    assert [f["rule"] for f in body["findings"]] == ["MCP002", "MCP007", "ACME001"]


@pytest.mark.parametrize(
    ("module", "said"),
    [
        ("raise RuntimeError('broken on import')", "could not be loaded: RuntimeError: broken on import"),
        ("RULES = ['not a rule']", "gives str, not a reconciler.findings.Rule"),
        (
            PLUGIN.replace('id="ACME001"', 'id="MCP001"'),
            "gives the rule MCP001, which mcp-reconciler already has",
        ),
        (
            PLUGIN.replace('if not subject.fields.get("description"):', "if 1 / 0:"),
            "failed: ZeroDivisionError: division by zero",
        ),
        (
            PLUGIN.replace(
                'yield Hit("the server has no description", ("description",), "")', 'yield "oops"'
            ),
            "gave str: a rule yields reconciler.findings.Hit",
        ),
        (PLUGIN.replace('applies_to="server"', 'applies_to="servers"'), "applies_to 'servers' is not"),
        (PLUGIN.replace('severity="low"', 'severity="urgent"'), "severity 'urgent' is not one of"),
        (
            PLUGIN.replace("check=_no_description,", "check=_no_description, params={'max': 3},"),
            "params must map",
        ),
        (PLUGIN.replace('id="ACME001"', "id=5"), "id must be text that is not empty"),
        (
            PLUGIN.replace(
                'references=(Reference("ACME handbook", "https://acme.example/handbook"),)', "references=None"
            ),
            "references must be",
        ),
    ],
    ids=[
        "raises",
        "not-a-rule",
        "taken-id",
        "check-fails",
        "yields-text",
        "applies-to",
        "severity",
        "params",
        "id-not-text",
        "no-references",
    ],
)
def test_a_broken_plugin_is_an_error_naming_it(risky: Path, tmp_path: Path, module: str, said: str) -> None:
    env = install_plugin(tmp_path / "site", module=module)
    done = subprocess.run(
        [str(SCRIPT), "lint", str(risky)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == ExitCode.ERROR
    assert said in done.stderr
    assert "rule plugin 'acme'" in done.stderr
    assert "Traceback" not in done.stderr


# --- the catalogue ----------------------------------------------------------------------------------------

README = ROOT / "README.md"
START = (
    "<!-- rule-catalogue: generated from reconciler/rules.py by tests/test_lint.py; do not edit by hand -->\n"
)
END = "<!-- /rule-catalogue -->"


def test_the_readme_catalogue_is_the_code_s(request: pytest.FixtureRequest) -> None:
    """The README's table of rules is catalogue_markdown(BUILTIN_RULES); --regen-goldens rewrites it."""
    text = README.read_text()
    before, rest = text.split(START, 1)
    current, after = rest.split(END, 1)
    wanted = catalogue_markdown(BUILTIN_RULES)
    if request.config.getoption("--regen-goldens"):
        README.write_text(before + START + wanted + END + after)
        current = wanted
    assert current == wanted, (
        "the README's rule catalogue is stale: run pytest --regen-goldens tests/test_lint.py"
    )


def test_list_rules_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["lint", "--list-rules", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == catalogue_markdown(BUILTIN_RULES)
    assert run(["lint", "--list-rules", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [r.id for r in BUILTIN_RULES]
    assert all(r["references"] and r["references"][0]["url"].startswith("https://") for r in listed)


def test_plan_in_github_actions_annotates_the_new_findings_on_stderr(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/calendar.yaml", RISKY_SERVER) / "m"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    with serving(monkeypatch, PROJECT, KEY):
        code = run(["plan", str(folder), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    json.loads(out)  # stdout stays one JSON document
    annotations = [line for line in err.splitlines() if line.startswith(("::error", "::warning", "::notice"))]
    assert len(annotations) == 2
    assert annotations[0].startswith(f"::error file={folder / 'servers' / 'calendar.yaml'},line=14,col=24,")
    assert "title=MCP002 cimd-broad-domain::" in annotations[0]


# --- the after-apply state, as apply writes it (review of issue 19) -------------------------------------


def statuses(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(f["rule"], f["object"]): f["status"] for f in body["findings"]}


def applied(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apply", str(folder), "--auto-approve"]) == 0
    capsys.readouterr()


def test_a_nested_setting_the_manifest_leaves_out_is_judged_as_apply_keeps_it(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    server = SAFE_SERVER + (
        "dynamicRegistration:\n  enabled: true\n  disableApprovedScopesAsDefault: true\n  flowId: sign-up\n"
    )
    folder = write("m/servers/calendar.yaml", server) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        applied(folder, capsys)
        # flowId left out: apply merges dynamicRegistration key by key and keeps the live flow
        changed = server.replace("  flowId: sign-up\n", "").replace(
            "name: calendar\n", "name: calendar\ndescription: x\n"
        )
        (folder / "servers" / "calendar.yaml").write_text(changed)
        code, body = plan_json(capsys, folder, "--fail-on", "medium")
    assert code == 0
    assert ("MCP004", 'server "calendar"') not in statuses(body)


def test_a_scope_category_the_manifest_leaves_out_stays_as_live_has_it(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    server = (
        "kind: MCPServer\nname: calendar\nskipConsentScreen: true\napprovedScopes:\n"
        "  - name: drive\n    category: connections\n    values: [google-drive]\n"
    )
    folder = write("m/servers/calendar.yaml", server) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        applied(folder, capsys)
        changed = server.replace("    category: connections\n", "") + "description: x\n"
        (folder / "servers" / "calendar.yaml").write_text(changed)
        _, body = plan_json(capsys, folder)
    assert statuses(body)[("MCP005", 'server "calendar"')] == "existing"


def test_what_prune_deletes_has_its_findings_resolved(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT) + "prune: true\n")
    write("m/servers/calendar.yaml", SAFE_SERVER)
    folder = write("m/servers/legacy.yaml", RISKY_SERVER.replace("name: calendar", "name: legacy")) / "m"
    with serving(monkeypatch, PROJECT, KEY):
        applied(folder, capsys)
        (folder / "servers" / "legacy.yaml").unlink()
        _, body = plan_json(capsys, folder)
    assert statuses(body) == {
        ("MCP002", 'server "legacy"'): "resolved",
        ("MCP007", 'server "legacy"'): "resolved",
    }


def test_adopting_an_object_takes_on_its_findings_as_new(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("m/project.yaml", project_yaml(PROJECT))
    folder = write("m/servers/calendar.yaml", "kind: MCPServer\nname: calendar\nadopt: true\n") / "m"
    with serving(monkeypatch, PROJECT, KEY) as emulator:
        emulator.seed(
            {"servers": [{"name": "calendar", "approvedCallbackUrls": ["http://agents.example.com/cb"]}]}
        )
        code, body = plan_json(capsys, folder, "--fail-on", "high")
    assert code == ExitCode.POLICY
    assert statuses(body) == {("MCP007", 'server "calendar"'): "new"}
