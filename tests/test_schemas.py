"""The JSON Schemas and the pydantic models describe the same manifest format."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from reconciler import models
from reconciler.schemas import KIND_SCHEMAS, declared_properties, format_checker, load_schema, schema_registry
from reconciler.variables import substitute
from tests.conftest import EXAMPLES, ROOT

SCHEMA_FILES = sorted(p.name for p in (ROOT / "schemas").glob("*.schema.json"))


def _fragment(file: str, *pointer: str) -> dict[str, Any]:
    """The fragment at ``pointer`` in ``file``, and a ``$ref`` to it that resolves in context."""
    node: Any = load_schema(file)
    for part in pointer:
        node = node[part]
    ref = f"{file}#/{'/'.join(pointer)}" if pointer else file
    return {**node, "x-ref": ref}


# Each model, and the schema fragment that describes the same object.
MODEL_SCHEMAS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (models.ProjectSpec, _fragment("project.schema.json")),
    (models.IgnoreRule, _fragment("project.schema.json", "$defs", "ignoreRule")),
    (models.ServerSpec, _fragment("server.schema.json")),
    (models.StandaloneClientSpec, _fragment("client.schema.json")),
    (models.ClientSpec, _fragment("common.schema.json", "$defs", "clientFields")),
    (models.SecretRef, _fragment("common.schema.json", "$defs", "secretRef")),
    (models.Scope, _fragment("server.schema.json", "$defs", "scope")),
    (models.DynamicRegistration, _fragment("server.schema.json", "properties", "dynamicRegistration")),
    (models.SessionSettings, _fragment("server.schema.json", "properties", "sessionSettings")),
    (models.CimdSettings, _fragment("server.schema.json", "properties", "cimdSettings")),
    (
        models.DomainPolicies,
        _fragment("server.schema.json", "properties", "cimdSettings", "properties", "domainPolicies"),
    ),
    (
        models.DomainPolicy,
        _fragment(
            "server.schema.json",
            *(
                "properties",
                "cimdSettings",
                "properties",
                "domainPolicies",
                "properties",
                "policies",
                "items",
            ),
        ),
    ),
    (models.FileSinkSpec, _fragment("project.schema.json", "$defs", "fileSink")),
    (models.CommandSinkSpec, _fragment("project.schema.json", "$defs", "commandSink")),
    (models.VaultSinkSpec, _fragment("project.schema.json", "$defs", "vaultSink")),
    (models.AwsSinkSpec, _fragment("project.schema.json", "$defs", "awsSink")),
    (models.GithubSinkSpec, _fragment("project.schema.json", "$defs", "githubSink")),
    (models.PolicySpec, _fragment("project.schema.json", "properties", "policy")),
    (models.RuleSetting, _fragment("project.schema.json", "$defs", "ruleSetting")),
    (models.PolicyExceptionSpec, _fragment("project.schema.json", "$defs", "policyException")),
]


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_each_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(load_schema(name))


@pytest.mark.parametrize(("model", "schema"), MODEL_SCHEMAS, ids=lambda v: getattr(v, "__name__", ""))
def test_model_fields_and_schema_properties_are_the_same(
    model: type[BaseModel], schema: dict[str, Any]
) -> None:
    fields = {info.alias or name for name, info in model.model_fields.items()}
    assert fields == declared_properties(schema)


def test_every_model_in_the_module_is_checked_against_a_schema() -> None:
    checked = {model for model, _ in MODEL_SCHEMAS}
    defined = {
        obj
        for obj in vars(models).values()
        if isinstance(obj, type) and issubclass(obj, models.Spec) and obj is not models.Spec
    }
    assert defined == checked


def _examples() -> list[tuple[str, type[BaseModel], Any]]:
    found = []
    for model, schema in MODEL_SCHEMAS:
        for example in schema.get("examples", []):
            found.append((model.__name__, model, example))
    return found


EXAMPLE_ENV = {"DESCOPE_PROJECT_ID": "P2example"}


def _substituted(value: Any) -> Any:
    if isinstance(value, str):
        return substitute(value, EXAMPLE_ENV).text
    if isinstance(value, dict):
        return {k: _substituted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("name", "model", "example"), _examples(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_schema_example_is_valid_and_parses_into_its_model(
    name: str, model: type[BaseModel], example: Any
) -> None:
    schema = next(s for m, s in MODEL_SCHEMAS if m is model)
    in_context = {"$ref": schema["x-ref"]}
    validator = Draft202012Validator(in_context, format_checker=format_checker, registry=schema_registry())
    data = _substituted(example)
    assert list(validator.iter_errors(data)) == []
    assert model.model_validate(data).model_dump(mode="json", by_alias=True, exclude_unset=True) == data


def test_there_are_examples_for_every_kind() -> None:
    names = {name for name, _, _ in _examples()}
    assert {"ProjectSpec", "ServerSpec", "StandaloneClientSpec"} <= names


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_example_manifests_point_editors_at_the_right_schema(path: Path) -> None:
    text = path.read_text()
    match = re.search(r"^# yaml-language-server: \$schema=(\S+)$", text, re.M)
    assert match, f"{path} has no yaml-language-server schema comment"
    schema = (path.parent / match.group(1)).resolve()
    kinds = set(re.findall(r"^kind: (\w+)$", text, re.M))
    assert len(kinds) == 1
    assert schema.name == KIND_SCHEMAS[kinds.pop()]
    assert schema.is_file()
