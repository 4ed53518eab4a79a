"""The team policy in the Project manifest: its schema, what the loader says is wrong with it (at
FILE:LINE:COL), the Policy the rules read from it, and how evaluate() judges under it."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from reconciler import models
from reconciler.errors import ManifestError
from reconciler.findings import (
    SEVERITIES,
    Finding,
    Hit,
    Param,
    Policy,
    PolicyException,
    Rule,
    Subject,
    evaluate,
)
from reconciler.manifest import load_manifest
from reconciler.models import Manifest, PolicyExceptionSpec, PolicySpec, RuleSetting
from reconciler.policy import TeamPolicy, policy_of, policy_problems
from reconciler.provenance import manifest_digests
from reconciler.rules import BUILTIN_RULES, rules_by_id
from reconciler.schemas import declared_properties, format_checker, load_schema, schema_files
from reconciler.subjects import manifest_subjects
from tests.conftest import Writer, project_yaml

# A server that the built-in rule MCP007 flags (a plain http callback on a host that is not loopback),
# with two clients for a client rule and exceptions. (MCP001 judges a CIMD domain policy for any domain,
# which the manifests' schema refuses: it can be named in a policy, but has nothing to find here.)
SERVER = """kind: MCPServer
name: calendar
audienceWhitelist: [https://calendar.example.com/mcp]
approvedScopes:
  - name: calendar:read
  - name: calendar:write
approvedCallbackUrls:
  - https://agents.example.com/cb
  - http://agents.example.com/insecure
clients:
  - name: ci-agent
    scopes: [calendar:read, calendar:write]
  - name: scheduler
    scopes: [calendar:read, calendar:write]
"""
# The Project document's lines before its policy: the policy's own start on line POLICY_LINE + 1.
PROJECT = project_yaml("P2POLICY")
POLICY_LINE = PROJECT.count("\n") + 1


def _many_scopes(subject: Subject, params: Mapping[str, int]) -> Iterator[Hit]:
    scopes = subject.fields.get("scopes") or ()
    if len(scopes) > params["maxScopes"]:
        yield Hit(f"{len(scopes)} scopes, more than {params['maxScopes']}", ("scopes",))


# A team's own rule, as a plugin gives it: another prefix, a client rule, a parameter with a minimum.
MANY_SCOPES = Rule(
    id="ACME-scopes",
    name="client-many-scopes",
    severity="medium",
    applies_to="client",
    summary="A client holds many scopes",
    rationale="Least privilege.",
    fix="Drop the scopes it does not use.",
    references=(),
    check=_many_scopes,
    params={"maxScopes": Param(default=3, description="the most scopes a client may hold", minimum=1)},
)
TOKEN_DAYS = Rule(
    id="ACME-tokens",
    name="long-refresh-tokens",
    severity="low",
    applies_to="server",
    summary="Refresh tokens live long",
    rationale="A stolen token is useful for as long as it lives.",
    fix="Shorten refreshTokenExpiration.",
    references=(),
    check=lambda _subject, _params: (),
    params={
        "maxRefreshTokenDays": Param(default=30, description="the longest refresh token, in days", minimum=7),
        "maxSessionTokenMinutes": Param(default=60, description="the longest session token, in minutes"),
    },
)
BUILT_IN = rules_by_id(BUILTIN_RULES)
RULES: tuple[Rule, ...] = (BUILT_IN["MCP001"], BUILT_IN["MCP007"], MANY_SCOPES, TOKEN_DAYS)


def _project(policy: str) -> str:
    return f"{PROJECT}policy:\n{textwrap.indent(textwrap.dedent(policy), '  ')}"


def _load(write: Writer, policy: str, *, rules: Sequence[Rule] = RULES, **environ: str) -> Manifest:
    write("project.yaml", _project(policy))
    folder = write("calendar.yaml", SERVER)
    return load_manifest([str(folder)], environ=environ, rules=rules)


def _problems(write: Writer, policy: str, *, rules: Sequence[Rule] | None = RULES) -> list[str]:
    write("project.yaml", _project(policy))
    folder = write("calendar.yaml", SERVER)
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(folder)], environ={}, rules=rules)
    return [str(problem).replace(f"{folder}/", "") for problem in caught.value.problems]


# ---- a valid policy ----------------------------------------------------------------------------------


def test_a_valid_policy_loads_and_becomes_the_policy_the_rules_read(write: Writer) -> None:
    manifest = _load(
        write,
        """\
        failOn: high
        rules:
          MCP001: {enabled: false}
          MCP007: {severity: critical}
          ACME-tokens: {params: {maxRefreshTokenDays: 14}}
        exceptions:
          - rule: ACME-scopes
            server: calendar
            client: ci-agent
            reason: "consent is collected by the agent platform (SEC-1234)"
          - rule: MCP007
            server: calendar
            reason: the insecure URL is a honeypot
        """,
    )
    team = policy_of(manifest.project.policy)
    assert team == TeamPolicy(
        Policy(
            disabled=frozenset({"MCP001"}),
            severities={"MCP007": "critical"},
            params={"ACME-tokens": {"maxRefreshTokenDays": 14}},
            exceptions=(
                PolicyException(
                    "ACME-scopes",
                    "calendar",
                    "consent is collected by the agent platform (SEC-1234)",
                    "ci-agent",
                ),
                PolicyException("MCP007", "calendar", "the insecure URL is a honeypot"),
            ),
            fail_on="high",
        ),
        "high",
    )
    assert team.policy.settings(TOKEN_DAYS) == {"maxRefreshTokenDays": 14, "maxSessionTokenMinutes": 60}


def test_without_a_policy_every_rule_runs_as_shipped(write: Writer) -> None:
    write("project.yaml", PROJECT)
    manifest = load_manifest([str(write("calendar.yaml", SERVER))], environ={})
    assert manifest.project.policy is None
    assert policy_of(None) == TeamPolicy(Policy(), None)
    assert policy_of(PolicySpec()) == TeamPolicy(Policy(), None)


@pytest.mark.parametrize(
    ("written", "fail_on", "severity"),
    [
        ("failOn: low", "low", "low"),
        ("failOn: medium", "medium", "medium"),
        ("failOn: high", "high", "high"),
        ("failOn: critical", "critical", "critical"),
        ("failOn: never", "never", None),  # a Policy cannot say never: TeamPolicy does
        ("rules: {}", None, None),  # not written: each command's own default
    ],
)
def test_fail_on_is_kept_as_written_and_as_the_policy_can_hold_it(
    write: Writer, written: str, fail_on: str | None, severity: str | None
) -> None:
    team = policy_of(_load(write, written).project.policy)
    assert (team.fail_on, team.policy.fail_on) == (fail_on, severity)


def test_a_parameter_may_come_from_a_variable(write: Writer) -> None:
    policy = "rules:\n  ACME-scopes:\n    params:\n      maxScopes: ${MAX_SCOPES}\n"
    manifest = _load(write, policy, MCP_VAR_MAX_SCOPES="5")
    assert policy_of(manifest.project.policy).policy.params == {"ACME-scopes": {"maxScopes": 5}}


def test_the_policy_is_part_of_the_project_settings_digest(write: Writer) -> None:
    before = manifest_digests(_load(write, "failOn: high\n"))
    after = manifest_digests(_load(write, "failOn: critical\n"))
    assert [name for name in after if after[name] != before[name]] == ["project settings"]


def test_the_built_in_rules_are_what_a_policy_may_name_unless_the_caller_passes_others(write: Writer) -> None:
    policy = "rules:\n  ACME-scopes: {severity: high}\n"
    assert _problems(write, policy, rules=None) == [
        f"project.yaml:{POLICY_LINE + 2}:5: policy.rules.ACME-scopes: no rule has the id 'ACME-scopes': the "
        'rules are the built-in ones and those of installed rule plugins (README, "Security checks")'
    ]
    assert _load(write, policy).project.policy == PolicySpec(
        rules={"ACME-scopes": RuleSetting(severity="high")}
    )


# ---- what the loader says is wrong -------------------------------------------------------------------

L = POLICY_LINE  # the line of "policy:"; the policy's lines follow it


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            "rules:\n  MCP0007: {severity: low}\n",
            f"project.yaml:{L + 2}:5: policy.rules.MCP0007: no rule has the id 'MCP0007' (did you mean "
            "'MCP007'?): the rules are the built-in ones and those of installed rule plugins (README, "
            '"Security checks")',
            id="unknown rule",
        ),
        pytest.param(
            "rules:\n  ACME-tokens:\n    params:\n      maxRefreshTokenDay: 14\n",
            f"project.yaml:{L + 4}:9: policy.rules.ACME-tokens.params.maxRefreshTokenDay: rule ACME-tokens "
            "(long-refresh-tokens) has no parameter 'maxRefreshTokenDay' (did you mean 'maxRefreshTokenDays'?); "
            "its parameters: maxRefreshTokenDays, maxSessionTokenMinutes",
            id="unknown parameter",
        ),
        pytest.param(
            "rules:\n  ACME-tokens: {params: {maxRefreshTokenDays: 3}}\n",
            f"project.yaml:{L + 2}:28: policy.rules.ACME-tokens.params.maxRefreshTokenDays: maxRefreshTokenDays "
            "of rule ACME-tokens is 3, below its minimum of 7 (the longest refresh token, in days)",
            id="parameter below its minimum",
        ),
        pytest.param(
            "rules:\n  MCP007:\n    severity: low\n    params: {maxUrls: 2}\n",
            f"project.yaml:{L + 4}:7: policy.rules.MCP007.params: rule MCP007 (callback-plain-http) has no "
            "parameters: leave out params",
            id="parameters for a rule without any",
        ),
        pytest.param(
            "exceptions:\n  - {rule: MCP070, server: calendar, reason: accepted}\n",
            f"project.yaml:{L + 2}:8: policy.exceptions[0].rule: no rule has the id 'MCP070' (did you mean "
            "'MCP007'?): the rules are the built-in ones and those of installed rule plugins (README, "
            '"Security checks")',
            id="exception for an unknown rule",
        ),
        pytest.param(
            "exceptions:\n  - rule: MCP007\n    server: calender\n    reason: accepted\n",
            f"project.yaml:{L + 3}:7: policy.exceptions[0].server: no MCPServer named 'calender' is declared "
            "in the manifests (did you mean 'calendar'?)",
            id="exception for an unknown server",
        ),
        pytest.param(
            "exceptions:\n  - rule: ACME-scopes\n    server: calendar\n    client: ci-agnet\n"
            "    reason: accepted\n",
            f"project.yaml:{L + 4}:7: policy.exceptions[0].client: server 'calendar' has no client named "
            "'ci-agnet' (did you mean 'ci-agent'?)",
            id="exception for an unknown client",
        ),
        pytest.param(
            "rules:\n  MCP007: {enabled: false}\nexceptions:\n  - rule: MCP007\n    server: calendar\n"
            "    reason: accepted\n",
            f"project.yaml:{L + 4}:7: policy.exceptions[0].rule: rule MCP007 is turned off "
            "(policy.rules.MCP007.enabled is false), so this exception would never apply: remove it, or turn "
            "the rule back on",
            id="exception for a rule turned off",
        ),
        pytest.param(
            "exceptions:\n  - rule: MCP007\n    server: calendar\n    client: ci-agent\n    reason: accepted\n",
            f"project.yaml:{L + 4}:7: policy.exceptions[0].client: rule MCP007 (callback-plain-http) judges "
            "servers, not clients, so an exception for client 'ci-agent' would never apply: leave out client "
            "to accept it on server 'calendar'",
            id="client exception for a server rule",
        ),
    ],
)
def test_each_policy_problem_is_reported_at_its_key_with_a_hint(
    write: Writer, policy: str, expected: str
) -> None:
    assert _problems(write, policy) == [expected]


def test_two_exceptions_for_one_object_and_rule_are_refused_at_the_second(write: Writer) -> None:
    policy = """\
    exceptions:
      - {rule: ACME-scopes, server: calendar, client: ci-agent, reason: one}
      - {rule: ACME-scopes, server: calendar, reason: 'server-wide: not the same'}
      - {rule: ACME-scopes, server: calendar, client: ci-agent, reason: two}
    """
    assert _problems(write, policy) == [
        f"project.yaml:{L + 4}:7: policy.exceptions[2]: a second exception for rule ACME-scopes on client "
        "'calendar/ci-agent' (the first is policy.exceptions[0]): only the first one's reason is ever shown; "
        "keep one"
    ]


def test_every_problem_of_a_policy_is_reported_in_one_run(write: Writer) -> None:
    policy = """\
    rules:
      MCP0001: {enabled: false}
      MCP007: {params: {x: 1}}
    exceptions:
      - {rule: MCP007, server: nowhere, reason: accepted}
    """
    found = _problems(write, policy)
    assert [line.split(": ")[1] for line in found] == [
        "policy.rules.MCP0001",
        "policy.rules.MCP007.params",
        "policy.exceptions[0].server",
    ]


def test_a_policy_that_breaks_its_schema_is_not_checked_against_the_rules_too(write: Writer) -> None:
    # Once the schema has refused part of it, the rest is judged on the next run: the reported
    # problems then stay at the keys written, not at indexes shifted by a dropped exception.
    policy = """\
    exceptions:
      - {rule: MCP007, server: calendar}
      - {rule: MCP007, server: nowhere, reason: accepted}
    """
    assert _problems(write, policy) == [
        f"project.yaml:{L + 2}:7: policy.exceptions[0]: missing required field 'reason'"
    ]


def test_policy_problems_alone_take_the_servers_and_rules_given() -> None:
    spec = PolicySpec(
        rules={"ACME-tokens": RuleSetting(params={"maxRefreshTokenDays": 7})},
        exceptions=(PolicyExceptionSpec(rule="ACME-scopes", server="crm", client="bot", reason="r"),),
    )
    assert policy_problems(spec, RULES, {"crm": {"bot"}}) == []
    assert policy_problems(spec, RULES, {"crm": set()}) == [
        (("policy", "exceptions", 0, "client"), "server 'crm' has no client named 'bot'")
    ]


# ---- what the schema refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            "failOn: severe\n",
            f"project.yaml:{L + 1}:11: policy.failOn: 'severe' is not one of 'low', 'medium', 'high', "
            "'critical', 'never' (did you mean 'never'?)",
            id="failOn",
        ),
        pytest.param(
            "rules:\n  MCP007: {severity: urgent}\n",
            f"project.yaml:{L + 2}:24: policy.rules.MCP007.severity: 'urgent' is not one of 'low', 'medium', "
            "'high', 'critical'",
            id="severity",
        ),
        pytest.param(
            "rules:\n  ACME-scopes: {params: {maxScopes: 0}}\n",
            f"project.yaml:{L + 2}:39: policy.rules.ACME-scopes.params.maxScopes: 0 is too small (minimum 1)",
            id="params 0",
        ),
        pytest.param(
            "rules:\n  ACME-scopes: {params: {maxScopes: '2'}}\n",
            f"project.yaml:{L + 2}:39: policy.rules.ACME-scopes.params.maxScopes: expected an integer, got a "
            "string",
            id="params string",
        ),
        pytest.param(
            "rules:\n  7up: {enabled: false}\n",
            f"project.yaml:{L + 2}:5: policy.rules['7up']: invalid rule id: a letter, then 1 to 31 letters, "
            "digits, '-' or '_' (such as MCP007)",
            id="rule id",
        ),
        pytest.param(
            "exceptions:\n  - {rule: MCP007, server: calendar}\n",
            f"project.yaml:{L + 2}:7: policy.exceptions[0]: missing required field 'reason'",
            id="no reason",
        ),
        pytest.param(
            "exceptions:\n  - {rule: MCP007, server: calendar, reason: '   '}\n",
            f"project.yaml:{L + 2}:48: policy.exceptions[0].reason: '   ' must say why the finding is "
            "accepted, not only white space",
            id="blank reason",
        ),
        pytest.param(
            "exceptions:\n  - {rule: MCP007, server: calendar, reason: ''}\n",
            f"project.yaml:{L + 2}:48: policy.exceptions[0].reason: '' must say why the finding is accepted, not only "
            "white space",
            id="empty reason",
        ),
        pytest.param(
            "failon: high\n",
            f"project.yaml:{L + 1}:3: policy.failon: unknown field 'failon' (did you mean 'failOn'?)",
            id="unknown policy key",
        ),
        pytest.param(
            "rules:\n  MCP007: {enable: false}\n",
            f"project.yaml:{L + 2}:14: policy.rules.MCP007.enable: unknown field 'enable' (did you mean "
            "'enabled'?)",
            id="unknown setting key",
        ),
        pytest.param(
            "exceptions:\n  - {rule: MCP007, server: calendar, reason: r, clinet: x}\n",
            f"project.yaml:{L + 2}:51: policy.exceptions[0].clinet: unknown field 'clinet' (did you mean "
            "'client'?)",
            id="unknown exception key",
        ),
    ],
)
def test_the_schema_refuses_a_malformed_policy(write: Writer, policy: str, expected: str) -> None:
    assert _problems(write, policy) == [expected]


@pytest.mark.parametrize("reason", ["\x1c\x1f", "\x85 ", "\u3000\t"])
def test_a_reason_of_any_white_space_is_refused(write: Writer, reason: str) -> None:
    policy = f"exceptions:\n  - {{rule: MCP007, server: calendar, reason: {json.dumps(reason)}}}\n"
    found = _problems(write, policy)
    assert len(found) == 1
    assert ": policy.exceptions[0].reason: " in found[0]
    with pytest.raises(ValidationError, match="must say why"):
        PolicyExceptionSpec(rule="MCP007", server="calendar", reason=reason)


def test_the_editor_schema_takes_variables_in_the_policy_and_still_refuses_wrong_values() -> None:
    editor = Draft202012Validator(
        json.loads(schema_files(editor=True)["project.schema.json"]), format_checker=format_checker
    )
    document: dict[str, Any] = {
        "kind": "Project",
        "projectId": "${DESCOPE_PROJECT_ID}",
        "policy": {
            "failOn": "${FAIL_ON:-high}",
            "rules": {"MCP015": {"enabled": "${STRICT}", "params": {"maxRefreshTokenDays": "${DAYS}"}}},
            "exceptions": [{"rule": "MCP005", "server": "${SERVER}", "reason": "${REASON}"}],
        },
    }
    assert list(editor.iter_errors(document)) == []
    document["policy"]["rules"]["MCP015"]["severity"] = "urgent"
    assert list(editor.iter_errors(document)) != []


# ---- the models and the schema agree ---------------------------------------------------------------

POLICY_FRAGMENTS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (PolicySpec, load_schema("project.schema.json")["properties"]["policy"]),
    (RuleSetting, load_schema("project.schema.json")["$defs"]["ruleSetting"]),
    (PolicyExceptionSpec, load_schema("project.schema.json")["$defs"]["policyException"]),
]


@pytest.mark.parametrize(("model", "schema"), POLICY_FRAGMENTS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_policy_models_have_the_fields_their_schema_declares(
    model: type[BaseModel], schema: dict[str, Any]
) -> None:
    assert {info.alias or name for name, info in model.model_fields.items()} == declared_properties(schema)
    assert all("description" in part for part in schema["properties"].values())
    for example in schema.get("examples", []):
        assert model.model_validate(example).model_dump(mode="json", exclude_unset=True) == example


def test_the_models_severities_are_the_findings() -> None:
    assert get_args(models.Severity) == SEVERITIES
    rule_setting = load_schema("project.schema.json")["$defs"]["ruleSetting"]
    assert tuple(rule_setting["properties"]["severity"]["enum"]) == SEVERITIES


# ---- evaluate() under a loaded policy ------------------------------------------------------------------


def _findings(manifest: Manifest, rules: Sequence[Rule] = RULES) -> list[Finding]:
    return evaluate(manifest_subjects(manifest), rules, policy_of(manifest.project.policy).policy)


def _summary(findings: Sequence[Finding]) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((f.rule, f.severity, f.client, f.excepted) for f in findings)


def test_under_an_empty_policy_the_rules_judge_as_they_ship(write: Writer) -> None:
    assert _summary(_findings(_load(write, "rules: {}\n"))) == [("MCP007", "high", None, None)]


def test_a_rule_turned_off_judges_nothing(write: Writer) -> None:
    policy = "rules:\n  MCP001: {enabled: false}\n  MCP007: {enabled: false}\n  ACME-scopes: {params: {maxScopes: 1}}\n"
    assert {f.rule for f in _findings(_load(write, policy))} == {"ACME-scopes"}


def test_a_rule_given_another_severity_reports_it(write: Writer) -> None:
    manifest = _load(write, "rules:\n  MCP001: {severity: low}\n  MCP007: {severity: critical}\n")
    assert _summary(_findings(manifest)) == [("MCP007", "critical", None, None)]


def test_parameters_reach_the_rule(write: Writer) -> None:
    manifest = _load(write, "rules:\n  ACME-scopes: {params: {maxScopes: 1}}\n")
    found = [f for f in _findings(manifest) if f.rule == "ACME-scopes"]
    assert [(f.client, f.message) for f in found] == [
        ("ci-agent", "2 scopes, more than 1"),
        ("scheduler", "2 scopes, more than 1"),
    ]


def test_an_exception_for_one_client_accepts_only_that_clients_finding(write: Writer) -> None:
    policy = """\
    rules:
      ACME-scopes: {params: {maxScopes: 1}}
    exceptions:
      - {rule: ACME-scopes, server: calendar, client: ci-agent, reason: "SEC-1234: reviewed"}
    """
    found = [f for f in _findings(_load(write, policy)) if f.rule == "ACME-scopes"]
    assert [(f.client, f.excepted, f.counts) for f in found] == [
        ("ci-agent", "SEC-1234: reviewed", False),
        ("scheduler", None, True),
    ]


def test_an_exception_for_a_server_accepts_its_findings_and_its_clients(write: Writer) -> None:
    policy = """\
    rules:
      ACME-scopes: {params: {maxScopes: 1}}
    exceptions:
      - {rule: ACME-scopes, server: calendar, reason: every agent needs both}
      - {rule: MCP007, server: calendar, reason: the http URL is a honeypot}
    """
    assert _summary(_findings(_load(write, policy))) == [
        ("ACME-scopes", "medium", "ci-agent", "every agent needs both"),
        ("ACME-scopes", "medium", "scheduler", "every agent needs both"),
        ("MCP007", "high", None, "the http URL is a honeypot"),
    ]


def test_the_policy_file_positions_are_those_of_a_file_with_other_documents(
    write: Writer, tmp_path: Path
) -> None:
    # One file holding the server first, then the Project: positions count from the file's start.
    project = _project("rules:\n  MCP0007: {}\n")
    write("all.yaml", f"{SERVER}---\n{project}")
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(tmp_path / "all.yaml")], environ={}, rules=RULES)
    [problem] = caught.value.problems
    assert (problem.line, problem.column, problem.path) == (
        SERVER.count("\n") + 1 + L + 2,
        5,
        "policy.rules.MCP0007",
    )
