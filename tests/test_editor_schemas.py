"""Schemas for editors: ``${VAR}`` taken wherever a value may hold one, ``$id``s, files that stand alone,
the ``schemas`` command, and export's schema lines, schema files and .gitignore.

The examples are checked as an editor checks them: YAML read without substitution, each document
validated by jsonschema against the editor schema of its kind, with nothing else to resolve against.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from reconciler import schemas
from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.schemas import (
    EDITOR_BASE,
    KIND_SCHEMAS,
    OUTPUT_SCHEMAS,
    SCHEMA_BASE,
    VARIABLE_PATTERN,
    bundled,
    format_checker,
    load_schema,
    schema_files,
    validator_for,
)
from reconciler.variables import substitute
from tests.conftest import EXAMPLES, ROOT, serving

REGENERATE = "regenerate them with: .venv/bin/mcp-reconciler schemas --out schemas"
EDITOR = schema_files(editor=True)
STRICT = schema_files(editor=False)
PACKAGE = ROOT / "reconciler" / "schemas"


def editor_validator(kind: str) -> Draft202012Validator:
    """The editor schema of ``kind`` on its own, as an editor loads it: no registry to resolve with."""
    return Draft202012Validator(json.loads(EDITOR[KIND_SCHEMAS[kind]]), format_checker=format_checker)


def editor_errors(document: dict[str, Any]) -> list[str]:
    return [error.message for error in editor_validator(document["kind"]).iter_errors(document)]


def read_as_an_editor(text: str) -> list[Any]:
    """YAML 1.2 documents, no variable substituted; a date stays the text written, as in editors."""

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        return node.isoformat() if isinstance(node, date | datetime) else node

    return [plain(doc) for doc in YAML(typ="safe", pure=True).load_all(text) if doc is not None]


def readme_documents() -> list[dict[str, Any]]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    found = [doc for block in blocks for doc in read_as_an_editor(block)]
    return [doc for doc in found if isinstance(doc, dict) and doc.get("kind") in KIND_SCHEMAS]


EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))


# ---- the files ----------------------------------------------------------------------------------


def test_the_repository_schemas_folder_is_what_the_schemas_command_writes() -> None:
    folder = ROOT / "schemas"
    assert not folder.is_symlink()
    written = {path.name: path.read_text() for path in folder.iterdir()}
    assert sorted(written) == sorted(EDITOR), REGENERATE
    for name, text in EDITOR.items():
        assert written[name] == text, f"schemas/{name} is out of date: {REGENERATE}"


def test_every_shipped_schema_is_named_and_has_its_id() -> None:
    shipped = sorted(path.name for path in PACKAGE.glob("*.json"))
    assert shipped == sorted([*KIND_SCHEMAS.values(), "common.schema.json", *OUTPUT_SCHEMAS])
    for name in shipped:
        assert load_schema(name)["$id"] == SCHEMA_BASE + name
    for name, text in EDITOR.items():
        expected = EDITOR_BASE + name if name in KIND_SCHEMAS.values() else SCHEMA_BASE + name
        assert json.loads(text)["$id"] == expected
        assert json.loads(STRICT[name])["$id"] == SCHEMA_BASE + name


def test_cross_file_references_resolve_offline_by_id_and_by_file_name() -> None:
    registry = schemas.schema_registry()
    for name in (*KIND_SCHEMAS.values(), "common.schema.json", *OUTPUT_SCHEMAS):
        by_id = registry.resolver().lookup(SCHEMA_BASE + name).contents
        assert by_id is registry.resolver().lookup(name).contents
    # drift's $ref to plan.schema.json resolves against drift's $id, in the registry, with no network.
    drift = schemas.validator_for_document("drift.schema.json")
    assert isinstance(drift.schema, dict)
    assert drift.schema["$id"] == SCHEMA_BASE + "drift.schema.json"
    assert any(drift.iter_errors({"format_version": "x"}))


@pytest.mark.parametrize("variant", ["editor", "strict"])
def test_each_written_schema_is_valid_and_stands_alone(variant: str) -> None:
    for name, text in (EDITOR if variant == "editor" else STRICT).items():
        schema = json.loads(text)
        Draft202012Validator.check_schema(schema)
        refs = re.findall(r'"\$ref": "([^"]*)"', text)
        assert refs, name
        assert all(ref.startswith("#/$defs/") for ref in refs), name
        defs = schema.get("$defs", {})
        assert all(ref.removeprefix("#/$defs/") in defs for ref in refs), name


def test_a_definition_that_two_files_name_alike_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        "a.schema.json": {"$ref": "b.schema.json#/$defs/x", "$defs": {"x": {"type": "string"}}},
        "b.schema.json": {"$defs": {"x": {"type": "integer"}}},
    }
    monkeypatch.setattr(schemas, "load_schema", lambda name: copy.deepcopy(files[name]))
    with pytest.raises(ValueError, match=r"\$defs/x of b.schema.json and of a.schema.json clash"):
        bundled("a.schema.json")


# ---- what the editor variant takes -----------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_each_example_manifest_passes_its_editor_schema_unsubstituted(path: Path) -> None:
    documents = read_as_an_editor(path.read_text())
    assert documents
    for document in documents:
        assert editor_errors(document) == [], path


def test_the_readme_manifest_documents_pass_their_editor_schemas() -> None:
    documents = readme_documents()
    assert {doc["kind"] for doc in documents} == set(KIND_SCHEMAS)
    for document in documents:
        assert editor_errors(document) == [], document


def test_the_calendar_example_holds_a_variable_the_strict_schema_refuses() -> None:
    calendar = read_as_an_editor((EXAMPLES / "servers" / "calendar.yaml").read_text())[0]
    assert "${" in json.dumps(calendar)
    assert next(validator_for("MCPServer").iter_errors(calendar), None) is not None
    assert editor_errors(calendar) == []


def _calendar() -> dict[str, Any]:
    document: dict[str, Any] = read_as_an_editor((EXAMPLES / "servers" / "calendar.yaml").read_text())[0]
    return document


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("skipConsentScreen", "maybe"),
        ("skipConsentScreen", "x${SKIP}"),  # only a whole reference becomes true or false
        ("loginPageURL", "not a url"),
        ("sessionSettings.sessionTokenExpirationUnit", "fortnights"),
        ("sessionSettings.sessionTokenExpiration", "${TTL}s"),
        ("sessionSettings.sessionTokenExpiration", -1),
        ("cimdSettings.domainPolicies.policies.0.domainPattern", "not a domain!"),
        ("surface", "elsewhere"),
        ("apiVersion", "mcp-reconciler/v9"),
        ("nmae", "typo"),
    ],
)
def test_a_wrong_value_still_fails_the_editor_schema(field: str, value: Any) -> None:
    document = _calendar()
    _set(document, field, value)
    assert editor_errors(document) != []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("skipConsentScreen", "${SKIP}"),
        ("skipConsentScreen", "${SKIP:-false}"),
        ("loginPageURL", "https://${AUTH_HOST}/login"),
        ("loginPageURL", "${LOGIN_URL}"),
        ("sessionSettings.sessionTokenExpirationUnit", "${UNIT:-minutes}"),
        ("sessionSettings.sessionTokenExpiration", "${TTL}"),
        ("cimdSettings.domainPolicies.policies.0.domainPattern", "*.${DOMAIN:-example.com}"),
        ("surface", "${SURFACE}"),
        ("name", "calendar-${ENV}"),
        ("clients.0.secret.rotation", "${ROTATION}"),
    ],
)
def test_a_variable_passes_the_editor_schema_where_a_value_may_hold_one(field: str, value: Any) -> None:
    document = _calendar()
    _set(document, field, value)
    assert editor_errors(document) == []


def test_a_project_takes_variables_in_numbers_and_sinks() -> None:
    project: dict[str, Any] = {
        "kind": "Project",
        "projectId": "${DESCOPE_PROJECT_ID}",
        "prune": "${PRUNE:-false}",
        "maxDeletes": "${MAX_DELETES}",
        "sinks": {
            "vault": {"type": "vault", "url": "${VAULT_ADDR}", "tokenEnv": "VAULT_TOKEN"},
            "aws": {"type": "aws-secrets-manager", "region": "${AWS_REGION}"},
            "run": {"type": "command", "command": ["store"], "timeoutSeconds": "${TIMEOUT}"},
        },
    }
    assert editor_errors(project) == []
    project["sinks"]["aws"]["region"] = "mars"
    assert editor_errors(project) != []


def _set(document: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


def test_the_editor_and_strict_schemas_agree_on_documents_without_variables() -> None:
    """The editor variant only adds references: on any document holding none, it judges as validate
    does; and so does the strict file written for other tools, standing alone."""
    rng = random.Random(20261201)  # noqa: S311 - seeded: the same inputs on every run
    seeds = [
        _substituted(doc)
        for path in EXAMPLE_FILES
        for doc in read_as_an_editor(path.read_text())
        if isinstance(doc, dict)
    ]
    palette: list[Any] = ["", "x", "https://a.example/cb", "not a url", "25%", "minutes", "fortnights"]
    palette += ["vault", "*.example.com", "a b", 0, 1, -1, 1.5, True, False, None, [], ["a", "a"], {}]
    agreed = valid = 0
    for _ in range(600):
        document = copy.deepcopy(rng.choice(seeds))
        for _ in range(rng.randint(0, 2)):
            places = list(_places(document))
            container, key = rng.choice(places)
            container[key] = copy.deepcopy(rng.choice(palette))
        strict = next(validator_for(document["kind"]).iter_errors(document), None) is None
        editor = next(editor_validator(document["kind"]).iter_errors(document), None) is None
        alone = Draft202012Validator(
            json.loads(STRICT[KIND_SCHEMAS[document["kind"]]]), format_checker=format_checker
        )
        assert editor is strict, document
        assert (next(alone.iter_errors(document), None) is None) is strict, document
        agreed, valid = agreed + 1, valid + strict
    assert 50 < valid < agreed


def _places(node: Any) -> Iterator[tuple[Any, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if key != "kind":
            yield node, key
        yield from _places(value)


def _substituted(value: Any) -> Any:
    if isinstance(value, str):
        return substitute(value, {"DESCOPE_PROJECT_ID": "P2example", "DOMAIN": "example.com"}).text
    if isinstance(value, dict):
        return {k: _substituted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v) for v in value]
    return value


@pytest.mark.parametrize(
    "text",
    ["${A}", "${A_1:-x}", "${a:-}", "x${A}y", "${A}${B}", "$${A}", "${1A}", "${A-x}", "${A", "$A", "${}"],
)
def test_the_reference_pattern_is_the_loaders(text: str) -> None:
    whole = json.loads(EDITOR["server.schema.json"])["$defs"]["wholeVariable"]["pattern"]
    try:
        result = substitute(text, {"A": "1", "B": "2", "a": "3", "A_1": "4"})
    except ValueError:
        result = None  # malformed: validate says so; the editor takes no malformed reference
    references = re.search(VARIABLE_PATTERN, text.replace("$${", "")) is not None
    assert references is (result is not None and result.text != text.replace("$${", "${"))
    assert (re.fullmatch(whole, text) is not None) is (result is not None and result.whole)


# ---- the schemas command ------------------------------------------------------------------------------


def test_the_schemas_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schemas", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: mcp-reconciler schemas")
    assert "# yaml-language-server: $schema=schemas/server.schema.json" in out


def test_the_schemas_command_writes_the_shipped_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["schemas", "--out", str(tmp_path / "editor")]) == 0
    assert capsys.readouterr().out.startswith(f"Wrote {len(EDITOR)} schema files to ")
    written = {path.name: path.read_text() for path in (tmp_path / "editor").iterdir()}
    assert written == {path.name: path.read_text() for path in (ROOT / "schemas").iterdir()}
    assert run(["schemas", "--out", str(tmp_path / "strict"), "--strict"]) == 0
    written = {path.name: path.read_text() for path in (tmp_path / "strict").iterdir()}
    assert written == STRICT
    assert json.loads(written["server.schema.json"]) == bundled("server.schema.json")


def test_the_schemas_command_lists_the_files_and_their_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schemas"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(EDITOR)
    assert lines[1].split() == ["server.schema.json", "manifest", EDITOR_BASE + "server.schema.json"]


# ---- export -------------------------------------------------------------------------------------------------

PROJECT = "P2EDITOR"
KEY = "K2-editor-key-5c1e"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def test_export_points_every_file_at_the_schemas_it_writes(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed({"servers": [{"name": "calendar", "approvedScopes": [{"name": "r"}], "clients": []}]})
    out = tmp_path / "exported"
    assert run(["export", "--out", str(out)]) == 0
    for path in (out / "project.yaml", out / "servers" / "calendar.yaml"):
        first = path.read_text().splitlines()[0]
        found = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
        assert found, first
        schema = (path.parent / found[1]).resolve()
        assert schema.read_text() == EDITOR[schema.name]
        for document in read_as_an_editor(path.read_text()):
            assert document["apiVersion"] == "mcp-reconciler/v1"
            assert list(document)[:2] == ["apiVersion", "kind"]
            assert editor_errors(document) == []
    assert sorted(p.name for p in (out / "schemas").iterdir()) == sorted(KIND_SCHEMAS.values())
    capsys.readouterr()
    assert run(["validate", str(out)]) == 0


def test_export_adds_to_a_gitignore_and_takes_schemas_it_would_write_alike(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed({"servers": [{"name": "calendar"}]})
    out = tmp_path / "repo"
    assert run(["schemas", "--out", str(out / "schemas")]) == 0
    (out / ".gitignore").write_text("node_modules/\n.secrets/")
    assert run(["export", "--out", str(out)]) == 0
    assert (out / ".gitignore").read_text() == (
        "node_modules/\n.secrets/\n"
        "# mcp-reconciler's state beside the Project file: journal, locks, crash logs.\n"
        ".mcp-reconciler/\n"
    )
    capsys.readouterr()
    assert run(["export", "--out", str(out)]) == 1  # project.yaml is there: only --force replaces it
    assert "already holds project.yaml, servers/calendar.yaml: use --force" in capsys.readouterr().err
    assert run(["export", "--out", str(out), "--force"]) == 0
    assert (out / ".gitignore").read_text().count(".mcp-reconciler/") == 1
