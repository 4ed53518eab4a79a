"""Loads the hand-written JSON Schemas shipped in ``reconciler/schemas/`` and validates documents.

Schema errors are turned into :class:`~reconciler.errors.Problem` messages written for people
("unknown field 'scope' (did you mean 'scopes'?)"), not jsonschema's own wording.

Each schema is compiled once per process, twice over: jsonschema's validator, which says what is wrong
and where, and a quick check (:func:`quick_check`) that only says whether a document is valid, with
jsonschema's own semantics keyword by keyword but without building an error or a validator per
value. A document runs through the quick check once; only one it finds invalid runs through
jsonschema, for the problems.
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
from jsonschema import _utils as jsonschema_utils
from jsonschema.exceptions import UndefinedTypeCheck, ValidationError
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
    valid = quick_check(kind)
    if valid is not None and valid(data):
        return []
    issues = []
    for error in _leaf_errors(validator_for(kind).iter_errors(data)):
        issues.extend(_describe(doc, error))
    return issues


# --- the quick check ------------------------------------------------------------------------------

Check = Callable[[Any], bool]
Evaluated = Callable[[dict[str, Any]], set[str]]

# Keywords that assert nothing: a schema of any other keyword than these and those compiled below gets
# no quick check (jsonschema alone validates it), so a keyword added to a schema can't be skipped.
_ANNOTATIONS = frozenset(
    {"$schema", "$defs", "$comment", "title", "description", "default", "examples", "errorMessage"}
    | {"deprecated", "readOnly", "writeOnly", "then", "else"}  # then and else: read with "if"
)
_TYPES = Draft202012Validator.TYPE_CHECKER
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# Each keyword the quick check implements, and the method of _Compiler that compiles it.
_KEYWORDS = {
    name: "_" + name.lstrip("$")
    for name in (
        *("$ref", "type", "enum", "const", "pattern", "format", "minLength", "maxLength", "minItems"),
        *("minProperties", "minimum", "exclusiveMinimum", "maximum", "uniqueItems", "required"),
        *("properties", "additionalProperties", "items", "propertyNames", "dependentSchemas", "allOf"),
        *("anyOf", "oneOf", "not", "if", "unevaluatedProperties"),
    )
}


class _Unsupported(Exception):
    """A schema uses a keyword the quick check does not implement."""


@cache
def quick_check(kind: str) -> Check | None:
    """Whether a document of ``kind`` is valid, as jsonschema would find it; None when the schema uses
    a keyword the quick check does not implement (jsonschema then decides alone)."""
    name = KIND_SCHEMAS[kind]
    try:
        return _Compiler().check(load_schema(name), schema_registry().resolver(base_uri=name))
    except _Unsupported:
        return None


class _Compiler:
    """Compiles a schema into nested closures, keyword by keyword as jsonschema applies them
    (jsonschema/_keywords.py), each one answering only "valid or not"."""

    def __init__(self) -> None:
        self.checks: dict[int, Check] = {}
        self.evaluations: dict[int, Evaluated] = {}

    def check(self, schema: Any, resolver: Any) -> Check:
        key = id(schema)
        if key not in self.checks:
            compiled: list[Check] = []

            def forward(instance: Any) -> bool:  # what a $ref back to this schema calls
                return compiled[0](instance)

            self.checks[key] = forward
            compiled.append(self._check(schema, resolver))
            self.checks[key] = compiled[0]
        return self.checks[key]

    def _check(self, schema: Any, resolver: Any) -> Check:
        if schema is True:
            return lambda _instance: True
        if schema is False:
            return lambda _instance: False
        if not isinstance(schema, dict):
            raise _Unsupported(repr(schema))
        if schema.get("$schema", _DIALECT) != _DIALECT:
            raise _Unsupported(schema["$schema"])  # jsonschema would switch to that dialect's rules
        checks: list[Check] = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            if keyword not in _KEYWORDS:
                raise _Unsupported(keyword)
            build = getattr(self, _KEYWORDS[keyword])
            checks.append(build(value, schema, resolver))
        if len(checks) == 1:
            return checks[0]

        def all_of(instance: Any) -> bool:
            return all(check(instance) for check in checks)

        return all_of

    # One method per keyword: (the keyword's value, the schema it is in, the resolver) → a check.

    def _ref(self, ref: str, _schema: Any, resolver: Any) -> Check:
        resolved = resolver.lookup(ref)
        return self.check(resolved.contents, resolved.resolver)

    def _type(self, types: Any, _schema: Any, _resolver: Any) -> Check:
        names = types if isinstance(types, list) else [types]
        for name in names:
            try:
                _TYPES.is_type(None, name)
            except UndefinedTypeCheck:
                raise _Unsupported(name) from None
        return lambda instance: any(_TYPES.is_type(instance, name) for name in names)

    def _enum(self, options: list[Any], _schema: Any, _resolver: Any) -> Check:
        return lambda instance: any(jsonschema_utils.equal(option, instance) for option in options)

    def _const(self, expected: Any, _schema: Any, _resolver: Any) -> Check:
        return lambda instance: bool(jsonschema_utils.equal(instance, expected))

    def _pattern(self, pattern: str, _schema: Any, _resolver: Any) -> Check:
        return lambda instance: not isinstance(instance, str) or re.search(pattern, instance) is not None

    def _format(self, name: str, _schema: Any, _resolver: Any) -> Check:
        return lambda instance: format_checker.conforms(instance, name)

    def _minLength(self, least: int, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        return lambda instance: not isinstance(instance, str) or len(instance) >= least

    def _maxLength(self, most: int, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        return lambda instance: not isinstance(instance, str) or len(instance) <= most

    def _minItems(self, least: int, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        return lambda instance: not isinstance(instance, list) or len(instance) >= least

    def _minProperties(self, least: int, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        return lambda instance: not isinstance(instance, dict) or len(instance) >= least

    def _minimum(self, least: Any, _schema: Any, _resolver: Any) -> Check:
        return lambda instance: not _TYPES.is_type(instance, "number") or not instance < least

    def _exclusiveMinimum(self, least: Any, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        return lambda instance: not _TYPES.is_type(instance, "number") or not instance <= least

    def _maximum(self, most: Any, _schema: Any, _resolver: Any) -> Check:
        return lambda instance: not _TYPES.is_type(instance, "number") or not instance > most

    def _uniqueItems(self, unique: bool, _schema: Any, _resolver: Any) -> Check:  # noqa: N802
        if not unique:
            return lambda _instance: True
        return lambda instance: not isinstance(instance, list) or bool(jsonschema_utils.uniq(instance))

    def _required(self, names: list[str], _schema: Any, _resolver: Any) -> Check:
        return lambda instance: not isinstance(instance, dict) or all(name in instance for name in names)

    def _properties(self, properties: dict[str, Any], _schema: Any, resolver: Any) -> Check:
        checks = [(name, self.check(sub, resolver)) for name, sub in properties.items()]

        def each(instance: Any) -> bool:
            if not isinstance(instance, dict):
                return True
            return all(check(instance[name]) for name, check in checks if name in instance)

        return each

    def _additionalProperties(self, extra: Any, schema: Any, resolver: Any) -> Check:  # noqa: N802
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        declared = set(schema.get("properties", ()))
        check = self.check(extra, resolver)

        def others(instance: Any) -> bool:
            if not isinstance(instance, dict):
                return True
            return all(check(value) for name, value in instance.items() if name not in declared)

        return others

    def _items(self, items: Any, schema: Any, resolver: Any) -> Check:
        if "prefixItems" in schema:
            raise _Unsupported("prefixItems")
        check = self.check(items, resolver)
        return lambda instance: not isinstance(instance, list) or all(check(item) for item in instance)

    def _propertyNames(self, names: Any, _schema: Any, resolver: Any) -> Check:  # noqa: N802
        check = self.check(names, resolver)
        return lambda instance: not isinstance(instance, dict) or all(check(name) for name in instance)

    def _dependentSchemas(self, dependent: dict[str, Any], _schema: Any, resolver: Any) -> Check:  # noqa: N802
        checks = [(name, self.check(sub, resolver)) for name, sub in dependent.items()]

        def each(instance: Any) -> bool:
            if not isinstance(instance, dict):
                return True
            return all(check(instance) for name, check in checks if name in instance)

        return each

    def _allOf(self, schemas: list[Any], _schema: Any, resolver: Any) -> Check:  # noqa: N802
        checks = [self.check(sub, resolver) for sub in schemas]
        return lambda instance: all(check(instance) for check in checks)

    def _anyOf(self, schemas: list[Any], _schema: Any, resolver: Any) -> Check:  # noqa: N802
        checks = [self.check(sub, resolver) for sub in schemas]
        return lambda instance: any(check(instance) for check in checks)

    def _oneOf(self, schemas: list[Any], _schema: Any, resolver: Any) -> Check:  # noqa: N802
        checks = [self.check(sub, resolver) for sub in schemas]
        return lambda instance: sum(1 for check in checks if check(instance)) == 1

    def _not(self, sub: Any, _schema: Any, resolver: Any) -> Check:
        check = self.check(sub, resolver)
        return lambda instance: not check(instance)

    def _if(self, condition: Any, schema: Any, resolver: Any) -> Check:
        test = self.check(condition, resolver)
        then = self.check(schema.get("then", True), resolver)
        otherwise = self.check(schema.get("else", True), resolver)
        return lambda instance: then(instance) if test(instance) else otherwise(instance)

    def _unevaluatedProperties(self, unevaluated: Any, schema: Any, resolver: Any) -> Check:  # noqa: N802
        check = self.check(unevaluated, resolver)
        evaluated = self.evaluated(schema, resolver)

        def rest(instance: Any) -> bool:
            if not isinstance(instance, dict):
                return True
            done = evaluated(instance)
            return all(check(value) for name, value in instance.items() if name not in done)

        return rest

    def evaluated(self, schema: Any, resolver: Any) -> Evaluated:
        """The properties of an instance that ``schema`` evaluates, as jsonschema finds them for
        unevaluatedProperties (jsonschema/_utils.py, find_evaluated_property_keys_by_schema)."""
        key = id(schema)
        if key not in self.evaluations:
            compiled: list[Evaluated] = []

            def forward(instance: dict[str, Any]) -> set[str]:
                return compiled[0](instance)

            self.evaluations[key] = forward
            compiled.append(self._evaluated(schema, resolver))
            self.evaluations[key] = compiled[0]
        return self.evaluations[key]

    def _evaluated(self, schema: Any, resolver: Any) -> Evaluated:
        if not isinstance(schema, dict):
            return lambda _instance: set()
        if "patternProperties" in schema or "$dynamicRef" in schema:
            raise _Unsupported("patternProperties or $dynamicRef")
        parts: list[Evaluated] = []
        if "$ref" in schema:
            resolved = resolver.lookup(schema["$ref"])
            parts.append(self.evaluated(resolved.contents, resolved.resolver))
        if isinstance(schema.get("properties"), dict):
            declared = set(schema["properties"])
            parts.append(lambda instance: declared & instance.keys())
        for keyword in ("additionalProperties", "unevaluatedProperties"):
            if keyword in schema:
                parts.append(self._valid_values(self.check(schema[keyword], resolver)))
        for name, sub in schema.get("dependentSchemas", {}).items():
            parts.append(self._when_present(name, self.evaluated(sub, resolver)))
        for keyword in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(keyword, []):
                parts.append(self._when_valid(self.check(sub, resolver), self.evaluated(sub, resolver)))
        if "if" in schema:
            parts.append(self._conditional(schema, resolver))

        def union(instance: dict[str, Any]) -> set[str]:
            found: set[str] = set()
            for part in parts:
                found |= part(instance)
            return found

        return union

    @staticmethod
    def _valid_values(check: Check) -> Evaluated:
        return lambda instance: {name for name, value in instance.items() if check(value)}

    @staticmethod
    def _when_present(name: str, evaluated: Evaluated) -> Evaluated:
        return lambda instance: evaluated(instance) if name in instance else set()

    @staticmethod
    def _when_valid(check: Check, evaluated: Evaluated) -> Evaluated:
        return lambda instance: evaluated(instance) if check(instance) else set()

    def _conditional(self, schema: dict[str, Any], resolver: Any) -> Evaluated:
        test = self.check(schema["if"], resolver)
        evaluated_if = self.evaluated(schema["if"], resolver)
        then = self.evaluated(schema["then"], resolver) if "then" in schema else None
        otherwise = self.evaluated(schema["else"], resolver) if "else" in schema else None

        def conditional(instance: dict[str, Any]) -> set[str]:
            if test(instance):
                return evaluated_if(instance) | (then(instance) if then else set())
            return otherwise(instance) if otherwise else set()

        return conditional


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
