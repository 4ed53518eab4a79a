"""Loading manifests: the Manifest it builds, variables, and clean errors for hostile input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.manifest import load_manifest
from reconciler.models import secret_key
from tests.conftest import EXAMPLES, Writer

PROJECT = (
    "kind: Project\nprojectId: P2test\ndefaultSink: local\nsinks:\n  local: {type: file, path: s.json}\n"
)


def _problems(folder: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest([str(folder)], environ=environ or {})
    return [str(p).replace(f"{folder}/", "") for p in caught.value.problems]


def test_examples_load_with_standalone_clients_merged_into_their_servers() -> None:
    manifest = load_manifest([str(EXAMPLES)], environ={})
    assert [s.name for s in manifest.servers] == ["calendar", "crm", "docs-search", "tickets"]
    docs = manifest.server("docs-search")
    assert docs is not None
    assert [c.name for c in docs.clients] == ["platform-indexer"]
    assert manifest.project.projectId == "P2MCPRECONCILERDEMO"
    assert manifest.project.maxDeletes == "25%"
    calendar = manifest.server("calendar")
    assert calendar is not None
    assert calendar.audienceWhitelist == ("https://calendar.mcp.example.com/mcp",)
    assert calendar.cimdSettings.domainPolicies.policies[0].domainPattern == "*.example.com"
    assert str(manifest.locations[("client", "tickets", "triage-bot")]).endswith("platform-agents.yaml:11:1")


def test_the_manifest_remembers_which_fields_it_mentions(write: Writer) -> None:
    write("p.yaml", PROJECT)
    folder = write(
        "s.yaml", "kind: MCPServer\nname: a\ndynamicRegistration: {enabled: false}\nclients: [{name: c}]\n"
    )
    server = load_manifest([str(folder)], environ={}).servers[0]
    assert server.mentioned() == {
        "kind": "MCPServer",
        "name": "a",
        "dynamicRegistration": {"enabled": False},
        "clients": [{"name": "c"}],
    }


def test_environment_values_fill_variables_and_whole_references_are_typed(write: Writer) -> None:
    write("p.yaml", PROJECT.replace("P2test", "${PID}"))
    folder = write(
        "s.yaml",
        "kind: MCPServer\nname: ${NAME}\nskipConsentScreen: ${SKIP}\ndescription: '${SKIP}'\n"
        "sessionSettings:\n  sessionTokenExpiration: ${TTL}\n",
    )
    manifest = load_manifest(
        [str(folder)],
        environ={"MCP_VAR_PID": "P2env", "MCP_VAR_NAME": "svc", "MCP_VAR_SKIP": "true", "MCP_VAR_TTL": "15"},
    )
    server = manifest.servers[0]
    assert manifest.project.projectId == "P2env"
    assert (server.name, server.skipConsentScreen, server.description) == ("svc", True, "true")
    assert server.sessionSettings.sessionTokenExpiration == 15


def test_secret_keys_default_to_server_and_client_names() -> None:
    manifest = load_manifest([str(EXAMPLES)], environ={})
    crm = manifest.server("crm")
    assert crm is not None
    assert secret_key("crm", crm.clients[0]) == "crm/sales-copilot"


def test_missing_project_and_undefined_variables(write: Writer) -> None:
    folder = write("s.yaml", "kind: MCPServer\nname: ${UNSET}\n")
    assert _problems(folder) == [
        f"{folder}: no 'kind: Project' document found among the manifests read; exactly one is required",
        "s.yaml:2:7: name: variable 'UNSET' is not set (as MCP_VAR_UNSET or in a --var-file) and has no default",
    ]


def test_clients_without_any_sink_are_refused(write: Writer) -> None:
    write("p.yaml", "kind: Project\nprojectId: P2\n")
    folder = write("s.yaml", "kind: MCPServer\nname: a\nclients:\n  - name: c\n")
    assert _problems(folder) == [
        "s.yaml:4:11: clients[0].name: no secret sink: name one in secret.sink, or set defaultSink in the Project",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: MCPServer\nname: !!python/object:os.system {}\n",
            "x.yaml:2:7: name: YAML tag 'tag:yaml.org,2002:python/object:os.system' is not allowed",
        ),
        ("kind: MCPServer\nname: !custom x\n", "x.yaml:2:7: name: YAML tag '!custom' is not allowed"),
        ("- just\n- a list\n", "x.yaml:1:1: a manifest document must be a mapping with a 'kind'"),
        (
            "kind: MCPServer\n? [a, b]\n: complex key\nname: x\n",
            "x.yaml:2:3: keys must be strings, not a list",
        ),
        (
            "kind: MCPServer\nname: x\n\tbad: tab\n",
            "x.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token (while scanning for the next token)",
        ),
    ],
)
def test_hostile_yaml_is_refused_cleanly(write: Writer, text: str, expected: str) -> None:
    write("p.yaml", PROJECT)
    folder = write("x.yaml", text)
    assert expected in _problems(folder)


def test_non_utf8_is_reported_at_the_bad_byte(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PROJECT)
    (tmp_path / "x.yaml").write_bytes(b"kind: MCPServer\nname: caf\xe9\n")
    assert _problems(tmp_path) == ["x.yaml:2:10: file is not valid UTF-8"]


def test_an_alias_bomb_is_stopped_quickly(write: Writer) -> None:
    write("p.yaml", PROJECT)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    folder = write("bomb.yaml", "kind: MCPServer\nname: b\n" + "\n".join(lines) + "\n")
    started = time.monotonic()
    problems = _problems(folder)
    assert time.monotonic() - started < 10
    assert problems == [
        "bomb.yaml:1:1: file is too large or too deeply nested: more than 200,000 values (after expanding aliases)"
    ]


def test_deep_nesting_is_refused(write: Writer) -> None:
    write("p.yaml", PROJECT)
    folder = write("deep.yaml", "kind: MCPServer\nname: d\nx: " + "[" * 2000 + "]" * 2000 + "\n")
    problems = _problems(folder)
    assert len(problems) == 1
    assert problems[0].startswith("deep.yaml:1:1: ")
    assert "nested" in problems[0]


def test_an_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PROJECT)
    (tmp_path / "big.yaml").write_text(
        "kind: MCPServer\nname: big\ndescription: " + "x" * (5 * 1024 * 1024) + "\n"
    )
    assert _problems(tmp_path) == ["big.yaml:1:1: file is larger than 4 MiB"]


def test_hidden_folders_and_other_files_are_skipped(write: Writer) -> None:
    write("p.yaml", PROJECT)
    write(".git/x.yaml", "not: a manifest\n")
    folder = write("notes.txt", "kind: nonsense\n")
    assert load_manifest([str(folder)], environ={}).servers == ()


def test_empty_documents_are_ignored(write: Writer) -> None:
    folder = write("p.yaml", "---\n" + PROJECT + "---\n")
    assert load_manifest([str(folder)], environ={}).project.projectId == "P2test"


def test_project_settings_and_sinks_are_checked_with_plain_messages(write: Writer) -> None:
    folder = write(
        "p.yaml",
        "kind: Project\nprojectId: P2\nmaxDeletes: lots\nsinks:\n  Bad.Name: {type: file, path: x}\n"
        "  gh: {type: github, repository: nope}\n  aws: {type: aws-secrets-manager}\n"
        "  weird: {type: carrier-pigeon}\n  cmd: {type: command, command: []}\n",
    )
    assert _problems(folder) == [
        "p.yaml:3:13: maxDeletes: 'lots' must be a count such as 10 or a percentage such as \"25%\"",
        "p.yaml:5:3: sinks['Bad.Name']: invalid sink name: use lowercase letters, digits, '-' and '_'",
        "p.yaml:6:34: sinks.gh.repository: 'nope' must be OWNER/REPOSITORY",
        "p.yaml:7:8: sinks.aws: missing required field 'region'",
        "p.yaml:8:17: sinks.weird.type: 'carrier-pigeon' is not one of 'file', 'command', 'vault', 'aws-secrets-manager', 'github'",
        "p.yaml:9:33: sinks.cmd.command: needs at least 1 item",
    ]


def test_reserved_tags_are_refused(write: Writer) -> None:
    write("p.yaml", PROJECT)
    folder = write(
        "s.yaml",
        "kind: MCPServer\nname: a\ntags: [ok, managed-by:mcp-reconciler]\nclients:\n"
        "  - {name: c, tags: ['mcp-reconciler:protect', 'mcp-reconciler:rotation=x']}\n",
    )
    assert _problems(folder) == [
        "s.yaml:3:12: tags[1]: 'managed-by:mcp-reconciler' is the ownership tag: mcp-reconciler stamps it (use adopt: true to take an object over)",
        "s.yaml:5:22: clients[0].tags[0]: 'mcp-reconciler:protect' is reserved: write protect: true instead",
        "s.yaml:5:48: clients[0].tags[1]: 'mcp-reconciler:rotation=x' is reserved: write secret.rotation instead",
    ]
