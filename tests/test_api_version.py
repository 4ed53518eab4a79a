"""apiVersion: optional on every manifest document, the current one accepted, any other refused where
it is written, naming the versions this release reads; never a field of the live object."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.kinds import CLIENT, SERVER
from reconciler.manifest import load_manifest
from reconciler.models import API_VERSION, API_VERSIONS, KIND_MODELS, ServerSpec
from reconciler.provenance import manifest_digests
from reconciler.schemas import KIND_SCHEMAS, SCHEMA_BASE, load_schema

PROJECT = "kind: Project\nprojectId: P2x\ndefaultSink: local\nsinks: {local: {type: file, path: s.json}}\n"
SERVER_DOC = "kind: MCPServer\nname: calendar\napprovedScopes: [{name: r}]\n"
CLIENT_DOC = "kind: MCPServerClient\nserver: calendar\nname: bot\nscopes: [r]\n"


def load(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "m.yaml").write_text(text)
    try:
        load_manifest([str(tmp_path)], environ={})
    except ManifestError as error:
        return [str(problem) for problem in error.problems]
    return []


def versioned(version: str) -> str:
    return "---\n".join(f"apiVersion: {version}\n{doc}" for doc in (PROJECT, SERVER_DOC, CLIENT_DOC))


def test_the_current_version_is_accepted_on_every_kind(tmp_path: Path) -> None:
    assert load(tmp_path, versioned(API_VERSION)) == []
    assert load(tmp_path, versioned(f"'{API_VERSION}'")) == []


def test_it_is_optional(tmp_path: Path) -> None:
    assert load(tmp_path, "---\n".join((PROJECT, SERVER_DOC, CLIENT_DOC))) == []


def test_an_unknown_version_is_refused_where_it_is_written_naming_the_supported_one(tmp_path: Path) -> None:
    problems = load(tmp_path, versioned("mcp-reconciler/v2"))
    message = (
        "apiVersion: unsupported apiVersion 'mcp-reconciler/v2': this mcp-reconciler reads "
        "mcp-reconciler/v1; a newer release may read it"
    )
    # One problem per document and nothing else: a Project in another format is still a Project (no
    # "no Project document"), and the rest of a document in another format is not judged.
    assert problems == [f"{tmp_path}/m.yaml:{line}:13: {message}" for line in (1, 7, 12)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "Mcp-Reconciler/V1",
            "unknown apiVersion 'Mcp-Reconciler/V1' (did you mean 'mcp-reconciler/v1'?): "
            "this mcp-reconciler reads mcp-reconciler/v1",
        ),
        ("v1", "unknown apiVersion 'v1': this mcp-reconciler reads mcp-reconciler/v1"),
        ("1", "expected a string such as 'mcp-reconciler/v1', got an integer"),
        ("null", "expected a string such as 'mcp-reconciler/v1', got nothing"),
    ],
)
def test_a_malformed_version_says_what_is_expected(tmp_path: Path, value: str, message: str) -> None:
    problems = load(tmp_path, f"{PROJECT}---\napiVersion: {value}\n{SERVER_DOC}")
    assert problems == [f"{tmp_path}/m.yaml:6:13: apiVersion: {message}"]


def test_the_version_may_come_from_a_variable(tmp_path: Path) -> None:
    text = f"apiVersion: ${{API:-{API_VERSION}}}\n{PROJECT}"
    assert load(tmp_path, text) == []


def test_the_schemas_and_the_models_know_the_same_versions() -> None:
    for kind, name in KIND_SCHEMAS.items():
        assert load_schema(name)["properties"]["apiVersion"]["enum"] == list(API_VERSIONS)
        assert "apiVersion" in KIND_MODELS[kind].model_fields
    assert SCHEMA_BASE.endswith(f"/{API_VERSION.rpartition('/')[2]}/")


def test_it_is_no_field_of_the_live_object_and_changes_no_digest(tmp_path: Path) -> None:
    plain = ServerSpec.model_validate({"kind": "MCPServer", "name": "calendar"})
    stated = ServerSpec.model_validate({"kind": "MCPServer", "name": "calendar", "apiVersion": API_VERSION})
    assert stated.apiVersion == API_VERSION
    assert stated.mentioned() == plain.mentioned()
    assert SERVER.payload(stated) == SERVER.payload(plain)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.yaml").write_text("---\n".join((PROJECT, SERVER_DOC, CLIENT_DOC)))
    (tmp_path / "b" / "m.yaml").write_text(versioned(API_VERSION))
    without = load_manifest([str(tmp_path / "a")], environ={})
    with_version = load_manifest([str(tmp_path / "b")], environ={})
    assert manifest_digests(without) == manifest_digests(with_version)
    client = with_version.servers[0].clients[0]
    assert "apiVersion" not in CLIENT.payload(client)
