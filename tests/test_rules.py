"""The built-in security rules (reconciler.rules): each fires on what it describes and stays quiet on the
near miss, judged the way the product judges manifests (YAML files, loaded, made subjects, evaluated);
live-shaped objects are judged too, and fields of the wrong type never make a check raise."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

import pytest

from reconciler.errors import ManifestError
from reconciler.findings import SEVERITIES, Finding, Policy, Rule, Subject, evaluate
from reconciler.manifest import load_manifest
from reconciler.rules import BUILTIN_RULES, catalogue_markdown
from reconciler.subjects import manifest_subjects
from tests.conftest import Writer, project_yaml

# What a test expects of one finding: its rule, the field it points at, and its detail.
Seen = tuple[str, str, str]

SERVER = "kind: MCPServer\nname: s\n"
DCR_GATED = "dynamicRegistration: {enabled: true, disableApprovedScopesAsDefault: true, flowId: dcr}\n"
CLEAN_CALLBACKS = (
    "['https://agents.example.com/cb', 'http://localhost:8976/cb', 'http://127.0.0.1:8976/cb', "
    "'http://[::1]:8976/cb']"
)
TWO_SCOPES = "approvedScopes: [{name: 'a'}, {name: 'b'}]\n"
CONNECTION_SCOPE = "approvedScopes: [{name: 'crm:read'}, {name: 'crm:sync', values: [salesforce]}]\n"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _policy(pattern: str, enabled: bool = True) -> str:
    return f"{{domainPattern: '{pattern}', enabled: {_flag(enabled)}}}"


def _cimd(*policies: str, enabled: bool = True) -> str:
    listed = ", ".join(policies)
    return f"cimdSettings: {{enabled: {_flag(enabled)}, domainPolicies: {{policies: [{listed}]}}}}\n"


def _session(kind: str, amount: int, unit: str | None, enabled: bool = True) -> str:
    """Session settings with one lifetime: ``kind`` is refreshToken or sessionToken."""
    unit_field = f", {kind}ExpirationUnit: {unit}" if unit else ""
    return f"sessionSettings: {{enabled: {_flag(enabled)}, {kind}Expiration: {amount}{unit_field}}}\n"


def _client(fields: str) -> str:
    return f"clients:\n  - {{name: c, {fields}}}\n"


def judge_manifest(write: Writer, body: str, policy: Policy | None = None) -> list[Finding]:
    """The findings on server ``s`` (and its clients) as ``body`` states it in a manifest file."""
    write("project.yaml", project_yaml("P2RULES"))
    folder = write("servers/s.yaml", SERVER + body)
    manifest = load_manifest([str(folder)], environ={})
    return evaluate(manifest_subjects(manifest), BUILTIN_RULES, policy)


def seen(findings: list[Finding]) -> list[Seen]:
    return sorted((f.rule, f.field, f.detail) for f in findings)


def server(**fields: Any) -> Subject:
    """A server as the live API holds it (``approvedScopes`` a flat list of items with categories)."""
    return Subject("server", "s", fields, server_fields=fields)


def client(server_fields: Mapping[str, Any] | None = None, **fields: Any) -> Subject:
    return Subject("client", "s", fields, "c", server_fields or {})


# ---- every rule: what triggers it, and the near miss that does not ---------------------------------

CASES = [
    # MCP001 (a bare '*') cannot be written in a manifest: see test_schema_refused_values, LIVE_CASES.
    pytest.param(
        _cimd(_policy("*.com"), _policy("*.example.com")),
        [("MCP002", "cimdSettings.domainPolicies.policies[0].domainPattern", "*.com")],
        id="MCP002-tld-wildcard",
    ),
    pytest.param(_cimd(_policy("*.example.com"), _policy("example.io")), [], id="MCP002-own-domains"),
    pytest.param(_cimd(_policy("*.io", enabled=False)), [], id="MCP002-policy-disabled"),
    pytest.param(
        _cimd(_policy("*.com"), enabled=False),
        [],
        id="MCP002-cimd-disabled",
    ),
    # A key left out of a nested setting keeps its live value (apply merges key by key): lint does
    # not judge it; plan judges the value apply leaves (tests/test_lint.py).
    pytest.param("dynamicRegistration: {enabled: true, flowId: dcr}\n", [], id="MCP003-left-out-offline"),
    pytest.param(
        "dynamicRegistration: {enabled: true, flowId: dcr, disableApprovedScopesAsDefault: false}\n",
        [("MCP003", "dynamicRegistration.disableApprovedScopesAsDefault", "")],
        id="MCP003-explicitly-false",
    ),
    pytest.param(DCR_GATED, [], id="MCP003+MCP004-gated"),
    pytest.param("dynamicRegistration: {enabled: false}\n", [], id="MCP003+MCP004-dcr-disabled"),
    pytest.param(
        "dynamicRegistration: {enabled: true, disableApprovedScopesAsDefault: true}\n",
        [],
        id="MCP004-left-out-offline",
    ),
    pytest.param(
        "dynamicRegistration: {enabled: true, disableApprovedScopesAsDefault: true, flowId: ''}\n",
        [("MCP004", "dynamicRegistration.flowId", "")],
        id="MCP004-empty-flow",
    ),
    pytest.param(
        "skipConsentScreen: true\n" + CONNECTION_SCOPE,
        [("MCP005", "skipConsentScreen", "")],
        id="MCP005-scope-with-values",
    ),
    pytest.param(
        "skipConsentScreen: true\napprovedScopes: [{name: drive, category: connections}]\n",
        [("MCP005", "skipConsentScreen", "")],
        id="MCP005-connections-category",
    ),
    pytest.param("skipConsentScreen: true\n" + TWO_SCOPES, [], id="MCP005-no-connection-scope"),
    pytest.param("skipConsentScreen: false\n" + CONNECTION_SCOPE, [], id="MCP005-consent-shown"),
    pytest.param(
        # The category the manifest states wins over what values suggest.
        "skipConsentScreen: true\napprovedScopes: [{name: p, category: permissions, values: [x]}]\n",
        [],
        id="MCP005-values-in-permissions",
    ),
    pytest.param(
        "skipConsentScreen: true\n" + DCR_GATED,
        [("MCP006", "skipConsentScreen", "")],
        id="MCP006-dcr",
    ),
    pytest.param(
        "skipConsentScreen: true\n" + _cimd(_policy("example.com")),
        [("MCP006", "skipConsentScreen", "")],
        id="MCP006-cimd",
    ),
    pytest.param(
        "skipConsentScreen: true\ndynamicRegistration: {enabled: false}\ncimdSettings: {enabled: false}\n",
        [],
        id="MCP006-registration-closed",
    ),
    pytest.param("skipConsentScreen: false\n" + DCR_GATED, [], id="MCP006-consent-shown"),
    pytest.param(
        "approvedCallbackUrls: ['https://agents.example.com/cb', 'http://agents.example.com/cb']\n",
        [("MCP007", "approvedCallbackUrls[1]", "http://agents.example.com/cb")],
        id="MCP007-plain-http",
    ),
    pytest.param(
        f"approvedCallbackUrls: {CLEAN_CALLBACKS}\n", [], id="MCP007+MCP008+MCP009+MCP010-https-and-loopback"
    ),
    pytest.param(
        "approvedCallbackUrls: ['com.example.app:/cb', 'javascript:alert(1)', 'file:///etc/passwd']\n",
        [
            ("MCP008", "approvedCallbackUrls[0]", "com.example.app:/cb"),
            ("MCP008", "approvedCallbackUrls[1]", "javascript:alert(1)"),
            ("MCP008", "approvedCallbackUrls[2]", "file:///etc/passwd"),
        ],
        id="MCP008-custom-schemes",
    ),
    pytest.param(
        "approvedCallbackUrls: ['https://*.example.com/cb', 'https://a.example.com/cb']\n",
        [("MCP009", "approvedCallbackUrls[0]", "https://*.example.com/cb")],
        id="MCP009-wildcard",
    ),
    pytest.param(
        "audienceWhitelist: ['http://mcp.example.com/mcp', 'urn:example:mcp', 'https://mcp.example.com/mcp']\n",
        [
            ("MCP011", "audienceWhitelist[0]", "http://mcp.example.com/mcp"),
            ("MCP011", "audienceWhitelist[1]", "urn:example:mcp"),
        ],
        id="MCP011-not-https",
    ),
    pytest.param(
        "audienceWhitelist: ['https://mcp.example.com/mcp', 'http://localhost:3000/mcp', "
        "'http://127.0.0.1:3000/mcp']\n",
        [],
        id="MCP011-https-and-loopback",
    ),
    pytest.param(
        "audienceWhitelist: ['https://mcp.example.com/', 'https://mcp.example.com/mcp?tenant=a', "
        "'HTTPS://mcp.example.com/mcp', 'https://MCP.example.com/mcp']\n",
        [
            ("MCP013", "audienceWhitelist[0]", "https://mcp.example.com/"),
            ("MCP013", "audienceWhitelist[1]", "https://mcp.example.com/mcp?tenant=a"),
            ("MCP013", "audienceWhitelist[2]", "HTTPS://mcp.example.com/mcp"),
            ("MCP013", "audienceWhitelist[3]", "https://MCP.example.com/mcp"),
        ],
        id="MCP013-not-canonical",
    ),
    pytest.param(
        # Only scheme and host are case-insensitive: an upper-case path is the server's own business.
        "audienceWhitelist: ['https://mcp.example.com', 'https://mcp.example.com/MCP', "
        "'https://mcp.example.com:8443']\n",
        [],
        id="MCP013-canonical",
    ),
    pytest.param("audienceWhitelist: []\n", [("MCP014", "audienceWhitelist", "")], id="MCP014-empty"),
    pytest.param("description: no audience stated\n", [], id="MCP014-absent-not-judged"),
    pytest.param(
        _session("refreshToken", 31, "days"),
        [("MCP015", "sessionSettings.refreshTokenExpiration", "")],
        id="MCP015-over-by-a-day",
    ),
    pytest.param(
        _session("refreshToken", 30, "weeks"),
        [("MCP015", "sessionSettings.refreshTokenExpiration", "")],
        id="MCP015-weeks",
    ),
    pytest.param(_session("refreshToken", 30, "days"), [], id="MCP015-exactly-the-bound"),
    pytest.param(_session("refreshToken", 4, "weeks"), [], id="MCP015-four-weeks"),
    pytest.param(_session("refreshToken", 52, "weeks", enabled=False), [], id="MCP015-sessions-disabled"),
    pytest.param(_session("refreshToken", 400, None), [], id="MCP015-no-unit-not-judged"),
    pytest.param(
        _session("sessionToken", 61, "minutes"),
        [("MCP016", "sessionSettings.sessionTokenExpiration", "")],
        id="MCP016-over-by-a-minute",
    ),
    pytest.param(
        _session("sessionToken", 2, "hours"),
        [("MCP016", "sessionSettings.sessionTokenExpiration", "")],
        id="MCP016-hours",
    ),
    pytest.param(_session("sessionToken", 60, "minutes"), [], id="MCP016-exactly-the-bound"),
    pytest.param(_session("sessionToken", 3600, "seconds"), [], id="MCP016-seconds"),
    pytest.param(_session("sessionToken", 1, "days", enabled=False), [], id="MCP016-sessions-disabled"),
    pytest.param(_session("sessionToken", 500, None), [], id="MCP016-no-unit-not-judged"),
    pytest.param(TWO_SCOPES + _client("scopes: [a, b]"), [("MCP017", "scopes", "")], id="MCP017-every-scope"),
    pytest.param(TWO_SCOPES + _client("scopes: [a]"), [], id="MCP017-some-scopes"),
    pytest.param("approvedScopes: [{name: a}]\n" + _client("scopes: [a]"), [], id="MCP017-only-scope"),
    pytest.param(
        CONNECTION_SCOPE + _client("scopes: ['crm:read'], forceAddAllAuthorizationInfo: true"),
        [("MCP018", "forceAddAllAuthorizationInfo", "")],
        id="MCP018-connections",
    ),
    pytest.param(
        TWO_SCOPES + _client("scopes: [a], forceAddAllAuthorizationInfo: true"),
        [],
        id="MCP018-no-connection-scope",
    ),
    pytest.param(
        CONNECTION_SCOPE + _client("scopes: ['crm:read'], forceAddAllAuthorizationInfo: false"),
        [],
        id="MCP018-not-forced",
    ),
    pytest.param(
        _client("approvedCallbackUrls: ['http://agents.example.com/cb']"),
        [("MCP019", "approvedCallbackUrls[0]", "http://agents.example.com/cb")],
        id="MCP019-plain-http",
    ),
    pytest.param(
        _client("approvedCallbackUrls: ['https://*.example.com/cb']"),
        [("MCP020", "approvedCallbackUrls[0]", "https://*.example.com/cb")],
        id="MCP020-wildcard",
    ),
    pytest.param(
        _client(f"approvedCallbackUrls: {CLEAN_CALLBACKS}"),
        [],
        id="MCP019+MCP020+MCP021+MCP022-https-and-loopback",
    ),
    pytest.param(
        _client("approvedCallbackUrls: ['myapp://cb']"),
        [("MCP022", "approvedCallbackUrls[0]", "myapp://cb")],
        id="MCP022-custom-scheme",
    ),
    # MCP010, MCP012 and MCP021 (a fragment) cannot be written in a manifest: see the live tests below.
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_rule_on_manifest(write: Writer, body: str, expected: list[Seen]) -> None:
    findings = judge_manifest(write, body)
    assert seen(findings) == sorted(expected)
    assert len({f.key for f in findings}) == len(findings)  # the detail tells hits apart
    for finding in findings:
        rule = next(r for r in BUILTIN_RULES if r.id == finding.rule)
        assert finding.client == ("c" if rule.applies_to == "client" else None)
        assert not finding.detail or f"'{finding.detail}'" in finding.message  # the value, quoted


# ---- values the manifest schema refuses, as the live API may hold them --------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_cimd(_policy("*")), id="bare-wildcard-pattern"),
        pytest.param("approvedCallbackUrls: ['https://a.example.com/cb#x']\n", id="callback-fragment"),
        pytest.param("audienceWhitelist: ['https://mcp.example.com/mcp#x']\n", id="audience-fragment"),
    ],
)
def test_schema_refused_values(write: Writer, body: str) -> None:
    """Why MCP001, MCP010, MCP012 and MCP021 are tested on live-shaped subjects: a manifest cannot
    hold these values, the live API can (made in the console, or by another tool)."""
    with pytest.raises(ManifestError):
        judge_manifest(write, body)


LIVE_CASES = [
    pytest.param(
        server(
            cimdSettings={
                "enabled": True,
                "domainPolicies": {
                    "policies": [
                        {"domainPattern": "*", "enabled": True},
                        {"domainPattern": "example.com", "enabled": True},
                        {"domainPattern": "*.*", "enabled": True},
                        {"domainPattern": "*", "enabled": False},
                    ]
                },
            }
        ),
        [
            ("MCP001", "cimdSettings.domainPolicies.policies[0].domainPattern", "*"),
            ("MCP001", "cimdSettings.domainPolicies.policies[2].domainPattern", "*.*"),
        ],
        id="MCP001-any-domain",
    ),
    pytest.param(
        server(cimdSettings={"enabled": False, "domainPolicies": {"policies": [{"domainPattern": "*"}]}}),
        [],
        id="MCP001-cimd-disabled",
    ),
    pytest.param(
        server(approvedCallbackUrls=["https://a.example.com/cb", "https://a.example.com/cb#x"]),
        [("MCP010", "approvedCallbackUrls[1]", "https://a.example.com/cb#x")],
        id="MCP010-fragment",
    ),
    pytest.param(server(approvedCallbackUrls=["https://a.example.com/cb?x=1"]), [], id="MCP010-query"),
    pytest.param(
        server(audienceWhitelist=["https://mcp.example.com/mcp#x"]),
        [("MCP012", "audienceWhitelist[0]", "https://mcp.example.com/mcp#x")],
        id="MCP012-fragment",
    ),
    pytest.param(server(audienceWhitelist=["https://mcp.example.com/mcp"]), [], id="MCP012-none"),
    pytest.param(
        client(approvedCallbackUrls=["https://a.example.com/cb#x"]),
        [("MCP021", "approvedCallbackUrls[0]", "https://a.example.com/cb#x")],
        id="MCP021-fragment",
    ),
    pytest.param(client(approvedCallbackUrls=["https://a.example.com/cb"]), [], id="MCP021-none"),
    # The live API's scopes carry the category they are listed under; values may be left out.
    pytest.param(
        server(skipConsentScreen=True, approvedScopes=[{"name": "crm:sync", "category": "connections"}]),
        [("MCP005", "skipConsentScreen", "")],
        id="MCP005-live-connections",
    ),
    pytest.param(
        server(
            skipConsentScreen=True,
            approvedScopes=[{"name": "crm:read", "category": "permissions", "values": ["x"]}],
        ),
        [],
        id="MCP005-live-permissions",
    ),
    pytest.param(
        client(
            {"approvedScopes": [{"name": "crm:sync", "category": "connections"}]},
            forceAddAllAuthorizationInfo=True,
        ),
        [("MCP018", "forceAddAllAuthorizationInfo", "")],
        id="MCP018-live-connections",
    ),
    pytest.param(
        client(
            {"approvedScopes": [{"name": "crm:read", "category": "attributes"}]},
            forceAddAllAuthorizationInfo=True,
        ),
        [],
        id="MCP018-live-attributes",
    ),
]


@pytest.mark.parametrize(("subject", "expected"), LIVE_CASES)
def test_rule_on_live_object(subject: Subject, expected: list[Seen]) -> None:
    findings = evaluate([subject], BUILTIN_RULES)
    assert seen(findings) == sorted(expected)
    assert all(not f.detail or f"'{f.detail}'" in f.message for f in findings)


def test_every_rule_has_a_triggering_case_and_a_near_miss() -> None:
    """Each case is named after the rules it is about; every rule needs one case that finds it and
    one about it that does not."""
    cases = [(str(case.id), cast("list[Seen]", case.values[-1])) for case in (*CASES, *LIVE_CASES)]
    for rule in BUILTIN_RULES:
        about = [expected for case_id, expected in cases if rule.id in case_id]
        assert any(rule.id in (e[0] for e in expected) for expected in about), f"{rule.id} never triggers"
        assert any(rule.id not in (e[0] for e in expected) for expected in about), f"{rule.id}: no near miss"


# ---- parameters --------------------------------------------------------------------------------------


def test_lifetime_parameters_come_from_the_policy(write: Writer) -> None:
    body = (
        "sessionSettings: {enabled: true, refreshTokenExpiration: 8, refreshTokenExpirationUnit: weeks, "
        "sessionTokenExpiration: 2, sessionTokenExpirationUnit: hours}\n"
    )
    assert [f.rule for f in judge_manifest(write, body)] == ["MCP015", "MCP016"]
    loose = Policy(params={"MCP015": {"maxRefreshTokenDays": 56}, "MCP016": {"maxSessionTokenMinutes": 120}})
    assert judge_manifest(write, body, loose) == []
    strict = Policy(params={"MCP015": {"maxRefreshTokenDays": 55}, "MCP016": {"maxSessionTokenMinutes": 119}})
    assert [f.rule for f in judge_manifest(write, body, strict)] == ["MCP015", "MCP016"]


# ---- odd data never makes a check raise ----------------------------------------------------------


WRONG_TYPES: dict[str, Any] = {
    "approvedCallbackUrls": 5,
    "audienceWhitelist": "https://mcp.example.com/mcp",  # a string, not a list of them
    "cimdSettings": "x",
    "dynamicRegistration": ["enabled"],
    "skipConsentScreen": "yes",
    "sessionSettings": {
        "enabled": True,
        "refreshTokenExpiration": "900",
        "refreshTokenExpirationUnit": 3,
        "sessionTokenExpiration": True,
        "sessionTokenExpirationUnit": "fortnights",
    },
    "approvedScopes": {"connectionsScopes": "x"},
    "scopes": None,
    "forceAddAllAuthorizationInfo": 1,
}
NESTED_WRONG_TYPES: dict[str, Any] = {
    "approvedCallbackUrls": [None, 5, {"url": "http://a.example.com"}],
    "audienceWhitelist": [None, 7],
    "cimdSettings": {"enabled": True, "domainPolicies": "x"},
    "dynamicRegistration": {"enabled": "true", "flowId": 5},
    "sessionSettings": None,
    "approvedScopes": [None, 5, "a", {"name": None, "values": 3}, {"category": 9}],
    "scopes": "ab",
}
POLICIES_WRONG_TYPES: dict[str, Any] = {
    "cimdSettings": {
        "enabled": True,
        "domainPolicies": {"policies": [5, None, {"domainPattern": 7, "enabled": True}]},
    },
    "dynamicRegistration": None,
    "approvedScopes": None,
}
# Strings no parser likes: a check may report them, never raise on them.
MALFORMED = {
    "approvedCallbackUrls": [
        "http://[::1",
        "https://[bad]/cb",
        "",
        " ",
        "::",
        "http://a.example.com:99999/cb",
    ],
    "audienceWhitelist": ["https://[bad", "", "HTTP://[::1]:x/", "//mcp.example.com/mcp"],
    "cimdSettings": {
        "enabled": True,
        "domainPolicies": {"policies": [{"domainPattern": " ", "enabled": True}]},
    },
    "sessionSettings": {
        "enabled": True,
        "refreshTokenExpiration": float("nan"),
        "refreshTokenExpirationUnit": "days",
    },
}


@pytest.mark.parametrize("rule", BUILTIN_RULES, ids=lambda rule: rule.id)
@pytest.mark.parametrize(
    ("fields", "judged"),
    [
        pytest.param(WRONG_TYPES, False, id="wrong-types"),
        pytest.param(NESTED_WRONG_TYPES, False, id="nested-wrong-types"),
        pytest.param(POLICIES_WRONG_TYPES, False, id="policies-wrong-types"),
        pytest.param(MALFORMED, True, id="malformed-strings"),
    ],
)
def test_odd_data_never_raises(rule: Rule, fields: dict[str, Any], judged: bool) -> None:
    subject = Subject(rule.applies_to, "s", fields, "c" if rule.applies_to == "client" else None, fields)
    hits = list(rule.check(subject, Policy().settings(rule)))
    if not judged:
        assert hits == []  # a field of the wrong type is nothing to judge


# ---- the catalogue itself ----------------------------------------------------------------------------


def test_ids_are_unique_ordered_and_complete() -> None:
    ids = [rule.id for rule in BUILTIN_RULES]
    assert ids == [f"MCP{number:03d}" for number in range(1, len(ids) + 1)]
    names = [rule.name for rule in BUILTIN_RULES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("rule", BUILTIN_RULES, ids=lambda rule: rule.id)
def test_rule_is_documented(rule: Rule) -> None:
    assert re.fullmatch(r"MCP\d{3}", rule.id)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    assert rule.severity in SEVERITIES
    assert rule.applies_to in ("server", "client")
    for text in (rule.summary, rule.rationale, rule.fix):
        assert text.strip()
        assert "\n" not in text
    assert 1 <= len(rule.references) <= 3
    for reference in rule.references:
        assert reference.title.strip()
        assert re.fullmatch(r"https://[^\s]+", reference.url)
    for name, param in rule.params.items():
        assert re.fullmatch(r"[a-z][A-Za-z]+", name)
        assert param.default >= param.minimum
        assert param.description.strip()


def test_catalogue_lists_every_rule_and_parameter() -> None:
    text = catalogue_markdown(BUILTIN_RULES)
    for rule in BUILTIN_RULES:
        assert f"| {rule.id} | `{rule.name}` |" in text
        for name, param in rule.params.items():
            assert f"| {rule.id} | `{name}` | {param.default} |" in text
    assert {name for rule in BUILTIN_RULES for name in rule.params} == {
        "maxRefreshTokenDays",
        "maxSessionTokenMinutes",
    }


@pytest.mark.parametrize(
    ("url", "flagged"),
    [
        ("http://localhost./cb", False),
        ("http://[::ffff:127.0.0.1]:8080/cb", False),
        ("http://[::1/cb", True),  # unparseable: its host is not known to be loopback
    ],
)
def test_callback_hosts_at_the_edges(url: str, flagged: bool) -> None:
    subject = Subject("server", "s", {"approvedCallbackUrls": [url]})
    found = [f.rule for f in evaluate([subject], BUILTIN_RULES)]
    assert ("MCP007" in found) is flagged


def test_a_live_double_wildcard_over_a_top_level_domain_is_broad() -> None:
    policies = {"policies": [{"domainPattern": "**.com", "enabled": True}]}
    subject = Subject("server", "s", {"cimdSettings": {"enabled": True, "domainPolicies": policies}})
    assert [f.rule for f in evaluate([subject], BUILTIN_RULES)] == ["MCP002"]
