"""Loads the hand-written JSON Schemas shipped in ``reconciler/schemas/`` and validates documents.

Schema errors are turned into :class:`~reconciler.errors.Problem` messages written for people
("unknown field 'scope' (did you mean 'scopes'?)"), not jsonschema's own wording.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from reconciler.errors import Problem
from reconciler.yamlsource import DocPath, Document

MAX_SUGGESTION_CANDIDATES = 200

KIND_SCHEMAS = {
    "Project": "project.schema.json",
    "MCPServer": "server.schema.json",
    "MCPServerClient": "client.schema.json",
}
_ALL_SCHEMAS = (*KIND_SCHEMAS.values(), "common.schema.json", "plan.schema.json", "drift.schema.json")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")

format_checker = FormatChecker(formats=())


@format_checker.checks("uri", raises=ValueError)
def is_absolute_url(value: object) -> bool:
    """An absolute URL: a scheme, a host for http(s), and no fragment (RFC 6749 §3.1.2, RFC 8707)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not parts.scheme or not _SCHEME.fullmatch(parts.scheme) or any(c.isspace() for c in value):
        raise ValueError("is not an absolute URL (expected e.g. https://host/path)")
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        raise ValueError("is not an absolute URL: it has no host")
    if parts.fragment or value.endswith("#"):
        raise ValueError("must not contain a fragment (#...)")
    return True


def load_schema(filename: str) -> dict[str, Any]:
    """The parsed contents of one shipped schema file."""
    text = resources.files("reconciler").joinpath("schemas", filename).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def schema_registry() -> Registry[Any]:
    """Every shipped schema, by file name, so that cross-file ``$ref`` resolves offline."""
    return Registry().with_resources(
        (name, Resource.from_contents(load_schema(name))) for name in _ALL_SCHEMAS
    )


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """A validator for one manifest kind, resolving cross-file ``$ref`` through the registry."""
    return Draft202012Validator(
        load_schema(KIND_SCHEMAS[kind]), registry=schema_registry(), format_checker=format_checker
    )


@dataclass(frozen=True)
class SchemaIssue:
    """A schema violation: what to tell the user, and which part of the document is unusable."""

    problem: Problem
    unusable: DocPath


@cache
def validator_for_document(filename: str) -> Draft202012Validator:
    """A validator for one of the shipped output schemas (plan.schema.json, drift.schema.json)."""
    return Draft202012Validator(
        load_schema(filename), registry=schema_registry(), format_checker=format_checker
    )


def schema_issues(doc: Document, kind: str, data: Any = None) -> list[SchemaIssue]:
    """Every schema violation in ``doc`` (or in ``data``, a pruned copy of it), located precisely."""
    data = doc.data if data is None else data
    issues = []
    for error in _leaf_errors(validator_for(kind).iter_errors(data)):
        issues.extend(_describe(doc, error))
    return issues


def usable_part(doc: Document, kind: str, issues: list[SchemaIssue]) -> Any | None:
    """``doc.data`` without the parts that broke the schema, so later checks can still run on the rest.

    Removing a bad required value can make its parent invalid in turn, so this repeats until the
    rest validates; ``None`` when nothing usable is left.
    """
    data = doc.data
    for _ in range(MAX_PRUNE_ROUNDS):
        if not issues:
            return data
        paths = {issue.unusable for issue in issues}
        if () in paths:
            return None
        data = _without(data, paths)
        issues = schema_issues(doc, kind, data)
    return None


MAX_PRUNE_ROUNDS = 8


def _without(data: Any, paths: set[DocPath]) -> Any:
    """A copy of ``data`` with the values at ``paths`` removed."""

    def walk(node: Any, here: DocPath) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*here, k)) for k, v in node.items() if (*here, k) not in paths}
        if isinstance(node, list):
            return [walk(v, (*here, i)) for i, v in enumerate(node) if (*here, i) not in paths]
        return node

    return walk(data, ())


def _leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """Descend into anyOf/oneOf to the most relevant cause; if/then wrappers are transparent."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            yield _best_alternative(error)
        else:
            yield error


def _best_alternative(error: ValidationError) -> ValidationError:
    # Prefer the alternative whose type matched: its error says what is wrong with the value.
    typed = [e for e in error.context or [] if e.validator != "type"]
    return typed[0] if typed else error


def _describe(doc: Document, error: ValidationError) -> list[SchemaIssue]:
    path: DocPath = tuple(error.absolute_path)
    validator = error.validator
    if validator in ("additionalProperties", "unevaluatedProperties"):
        return _unknown_fields(doc, path, error)
    if "propertyNames" in error.schema_path:
        # The error is about a key, not a value: point at the key and name it in the path.
        key_path = (*path, str(error.instance))
        custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
        message = custom if isinstance(custom, str) else f"{_show(error.instance)} is not a valid name"
        return [SchemaIssue(doc.problem(key_path, message, key=True), key_path)]
    if validator == "required":
        return [SchemaIssue(doc.problem(path, _required_message(error)), path)]
    return [SchemaIssue(doc.problem(path, _message(error)), path)]


def _unknown_fields(doc: Document, path: DocPath, error: ValidationError) -> list[SchemaIssue]:
    allowed = sorted(declared_properties(error.schema))
    instance = error.instance if isinstance(error.instance, dict) else {}
    issues = []
    for name in instance:
        if name not in allowed:
            message = f"unknown field '{name}'{did_you_mean(name, allowed)}"
            issues.append(SchemaIssue(doc.problem((*path, name), message, key=True), (*path, name)))
    return issues


def declared_properties(schema: Any) -> set[str]:
    """Property names a schema fragment declares, following ``$ref`` and ``allOf``."""
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", {}))
    if "$ref" in schema:
        names |= declared_properties(_resolve(schema["$ref"]))
    for part in schema.get("allOf", []):
        names |= declared_properties(part)
    return names


def _resolve(ref: str) -> Any:
    # Every $ref in the shipped schemas names its file, so the registry resolves it without a base.
    if ref.startswith("#"):
        return {}
    return schema_registry().resolver().lookup(ref).contents


def _required_message(error: ValidationError) -> str:
    match = re.match(r"'(.+)' is a required property", error.message)
    name = match.group(1) if match else error.message
    return f"missing required field '{name}'"


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _message(error: ValidationError) -> str:
    # A schema may say in its own words what a pattern means ("errorMessage", as ajv-errors and
    # yaml-language-server read it), which beats echoing a regular expression.
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and isinstance(custom, str):
        return f"{_show(error.instance)} {custom}" if isinstance(error.instance, str) else custom
    describe = _MESSAGES.get(str(error.validator))
    return describe(error.instance, error.validator_value, error) if describe else _short(error.message)


def _type_message(value: Any, expected: Any, _: ValidationError) -> str:
    names = [
        _TYPE_NAMES.get(str(t), str(t)) for t in (expected if isinstance(expected, list) else [expected])
    ]
    return f"expected {' or '.join(names)}, got {_json_type(value)}"


def _enum_message(value: Any, options: Any, _: ValidationError) -> str:
    listed = ", ".join(repr(v) for v in options)
    return f"{_show(value)} is not one of {listed}{did_you_mean(str(value), [str(v) for v in options])}"


_MESSAGES: dict[str, Callable[[Any, Any, ValidationError], str]] = {
    "type": _type_message,
    "enum": _enum_message,
    "const": lambda _v, expected, _e: f"must be {expected!r}",
    "format": lambda value, _x, error: f"{_show(value)} {error.cause or 'is not valid'}",
    "pattern": lambda value, pattern, _e: f"{_show(value)} does not match the expected form {pattern}",
    "uniqueItems": lambda _v, _x, _e: "contains duplicate items",
    "minLength": lambda _v, _x, _e: "must not be empty",
    "maxLength": lambda _v, limit, _e: f"is longer than {limit} characters",
    "minItems": lambda _v, least, _e: f"needs at least {least} item{'s' if least != 1 else ''}",
    "minimum": lambda value, least, _e: f"{_show(value)} is too small (minimum {least})",
    "exclusiveMinimum": lambda value, least, _e: f"{_show(value)} must be greater than {least}",
}


def _show(value: Any) -> str:
    return repr(_short(value)) if isinstance(value, str) else repr(value)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def did_you_mean(word: str, candidates: list[str] | set[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    if len(candidates) > MAX_SUGGESTION_CANDIDATES or len(word) > 200:
        return ""  # difflib is quadratic: a hint is not worth seconds
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
