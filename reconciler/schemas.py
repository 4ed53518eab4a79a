"""Loads the hand-written JSON Schemas shipped in ``reconciler/schemas/`` and validates documents.

Schema errors are turned into :class:`~reconciler.errors.Problem` messages written for people
("unknown field 'scope' (did you mean 'scopes'?)"), not jsonschema's own wording.

Each schema is compiled once per process, twice over: jsonschema's validator, which says what is wrong
and where, and a quick check (:func:`quick_check`) that only says whether a document is valid, with
jsonschema's own semantics keyword by keyword but without building an error or a validator per
value. A document runs through the quick check once; only one it finds invalid runs through
jsonschema, for the problems.

Every schema has an ``$id`` (``https://mcp-reconciler.dev/schemas/v1/<file>``): an identifier, not an
address, as nothing is served there. The registry holds each schema under its ``$id`` and its file
name, so that cross-file ``$ref`` resolves offline. For editors and other tools, :func:`schema_files`
writes each schema standing alone (what it refers to in other files copied into its ``$defs``) and, for
the manifest kinds, in an editor variant that also accepts ``${VAR}`` references wherever a value may
hold one (:func:`editor_variant`): validate checks the values after substitution, against these.
"""

from __future__ import annotations

import copy
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
from reconciler.models import API_VERSION, API_VERSIONS
from reconciler.yamlsource import DocPath, Document

MAX_SUGGESTION_CANDIDATES = 200

KIND_SCHEMAS = {
    "Project": "project.schema.json",
    "MCPServer": "server.schema.json",
    "MCPServerClient": "client.schema.json",
}
# The JSON documents the commands print (--format json, plan --out), each described by a schema.
OUTPUT_SCHEMAS = (
    *("plan.schema.json", "drift.schema.json", "apply.schema.json", "validate.schema.json"),
    *("export.schema.json", "secrets-check.schema.json", "lint.schema.json"),
)
_ALL_SCHEMAS = (*KIND_SCHEMAS.values(), "common.schema.json", *OUTPUT_SCHEMAS)
SCHEMA_BASE = "https://mcp-reconciler.dev/schemas/v1/"  # v1: the manifest format, API_VERSION
EDITOR_BASE = SCHEMA_BASE + "editor/"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SPACE = re.compile(r"\s")  # what str.isspace() accepts: re's \s is Py_UNICODE_ISSPACE too

format_checker = FormatChecker(formats=())


@format_checker.checks("uri", raises=ValueError)
def is_absolute_url(value: object) -> bool:
    """An absolute URL: a scheme, a host for http(s), and no fragment (RFC 6749 §3.1.2, RFC 8707)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not parts.scheme or not _SCHEME.fullmatch(parts.scheme) or _SPACE.search(value):
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
    """Every shipped schema, by file name and by ``$id``, so that cross-file ``$ref`` resolves offline."""
    resources = [(name, Resource.from_contents(load_schema(name))) for name in _ALL_SCHEMAS]
    return Registry().with_resources(
        [*resources, *((resource.id() or name, resource) for name, resource in resources)]
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
    if quick_check(kind)(data):
        return []
    issues = []
    for error in _leaf_errors(validator_for(kind).iter_errors(data)):
        issues.extend(_describe(doc, error))
    return issues


# --- the quick check ------------------------------------------------------------------------------

Check = Callable[[Any], bool]


@cache
def quick_check(kind: str) -> Check:
    """Whether a document of ``kind`` is valid: jsonschema-rs (compiled, in Rust) under the same
    schemas, registry and ``uri`` format, without building an error. A test holds it to jsonschema's
    judgement on thousands of valid and broken documents; jsonschema alone says what is wrong."""
    import jsonschema_rs  # noqa: PLC0415 - only loading manifests needs it

    validator = jsonschema_rs.Draft202012Validator(
        load_schema(KIND_SCHEMAS[kind]),
        formats={"uri": _is_uri},
        validate_formats=True,
        ignore_unknown_formats=False,
        registry=_rs_registry(),
        base_uri=SCHEMA_BASE + KIND_SCHEMAS[kind],
        offline=True,
    )
    valid: Check = validator.is_valid
    return valid


@cache
def _rs_registry() -> Any:
    """Every shipped schema under its ``$id``, for jsonschema-rs (read once for all kinds)."""
    import jsonschema_rs  # noqa: PLC0415 - only loading manifests needs it

    resources = [(SCHEMA_BASE + name, load_schema(name)) for name in _ALL_SCHEMAS]
    return jsonschema_rs.Registry(resources, draft=jsonschema_rs.Draft202012)


def _is_uri(value: str) -> bool:
    try:
        return is_absolute_url(value)
    except ValueError:
        return False


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


def api_version_problem(doc: Document) -> Problem | None:
    """Why the document's ``apiVersion`` is not one this version reads; None when it is, or is left out.

    Checked before anything else in the document: a format this version does not know is not read by
    its rules, which could only report problems that are not there."""
    data = doc.data if isinstance(doc.data, dict) else {}
    if "apiVersion" not in data:
        return None
    value = data["apiVersion"]
    if isinstance(value, str) and value in API_VERSIONS:
        return None
    supported = ", ".join(API_VERSIONS)
    if not isinstance(value, str):
        message = f"expected a string such as {API_VERSION!r}, got {_json_type(value)}"
    elif re.fullmatch(r"mcp-reconciler/v[0-9]+", value):
        message = (
            f"unsupported apiVersion {_show(value)}: this mcp-reconciler reads {supported}; "
            "a newer release may read it"
        )
    else:
        hint = did_you_mean(value, list(API_VERSIONS))
        message = f"unknown apiVersion {_show(value)}{hint}: this mcp-reconciler reads {supported}"
    return doc.problem(("apiVersion",), message)


# --- schema files for editors and other tools -----------------------------------------------------

# A ${NAME} or ${NAME:-default} reference (reconciler.variables): anywhere in a string, which stays
# a string; or the whole value, which an unquoted value is typed by (true, 10) after substitution.
VARIABLE_PATTERN = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
_VARIABLE_DEFS = {
    "variable": {
        "description": "A text holding ${NAME} or ${NAME:-default} references, replaced by the value of "
        "the variable before validate checks the value.",
        "type": "string",
        "pattern": VARIABLE_PATTERN,
    },
    "wholeVariable": {
        "description": "One unquoted ${NAME} or ${NAME:-default} reference: its value is typed as YAML "
        "would type it (true, 10), then checked by validate.",
        "type": "string",
        "pattern": f"^{VARIABLE_PATTERN}$",
    },
}
# Keywords that annotate: kept beside the alternatives when a value schema is widened, for hovers.
_EDITOR_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})
# Keywords of a value schema that a ${VAR} reference (any string of four characters or more) could fail.
_STRICT_VALUE_KEYWORDS = frozenset(
    {"enum", "const", "pattern", "format", "maxLength", "minimum", "maximum", "exclusiveMinimum"}
    | {"exclusiveMaximum", "multipleOf"}
)
_SCALAR_TYPES = frozenset({"string", "boolean", "integer", "number"})
# Where the editor variant widens value schemas. Not under "if" (a condition on a value written as a
# reference holds for no value), "not", "dependentSchemas" (they refuse a second key, whatever its
# value) or "propertyNames" (keys are never substituted).
_SUBSCHEMA_MAPS = ("properties", "$defs")
_SUBSCHEMAS = ("additionalProperties", "unevaluatedProperties", "items", "then", "else")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def schema_files(*, editor: bool = True) -> dict[str, str]:
    """The schema files to write for editors and other tools (file name → JSON text), each standing
    alone: the manifest kinds (in their editor variant unless ``editor`` is false) and the output
    documents. ``mcp-reconciler schemas --out`` writes them; the repository's ``schemas/`` holds them."""
    files = {}
    for name in (*KIND_SCHEMAS.values(), *OUTPUT_SCHEMAS):
        schema = bundled(name)
        if editor and name in KIND_SCHEMAS.values():
            schema = editor_variant(schema, name)
        files[name] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return files


def bundled(name: str) -> dict[str, Any]:
    """The shipped schema ``name`` with every definition it refers to in another file copied into its
    own ``$defs``, under the same name, so that it resolves without the other files."""
    root = copy.deepcopy(load_schema(name))
    origins = dict.fromkeys(root.get("$defs", {}), name)
    taken: dict[str, Any] = {}

    def rewrite(node: Any, file: str) -> None:
        if isinstance(node, list):
            for item in node:
                rewrite(item, file)
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, _, pointer = ref.partition("#")
            source, found = target or file, re.fullmatch(r"/\$defs/([^/]+)", pointer)
            if found is None:
                raise ValueError(f"{file}: $ref {ref!r} names no definition")
            node["$ref"] = f"#/$defs/{found[1]}"
            take(source, found[1])
        for key, value in node.items():
            if key not in ("examples", "default", "const", "enum"):
                rewrite(value, file)

    def take(source: str, definition: str) -> None:
        if origins.get(definition) == source:
            return
        if definition in origins:
            raise ValueError(f"{name}: $defs/{definition} of {source} and of {origins[definition]} clash")
        origins[definition] = source
        taken[definition] = copy.deepcopy(load_schema(source)["$defs"][definition])
        rewrite(taken[definition], source)

    rewrite(root, name)
    if taken:
        root["$defs"] = {**root.get("$defs", {}), **taken}
    return root


def editor_variant(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A manifest kind's schema, standing alone, that also takes a ``${VAR}`` reference wherever a value
    may hold one: each value schema that a reference could fail becomes ``anyOf: [itself, a reference]``
    (a whole reference where the value is not text). Editors check everything else as validate does."""
    widened: dict[str, Any] = _widened(copy.deepcopy(schema))
    widened["$id"] = EDITOR_BASE + name
    widened["description"] = (
        f"{widened.get('description', '')} This is the variant for editors: wherever a value may hold "
        "${NAME} or ${NAME:-default}, it takes one; mcp-reconciler validate checks the value after "
        "substitution."
    ).strip()
    defs = widened.setdefault("$defs", {})
    if set(_VARIABLE_DEFS) & set(defs):
        raise ValueError(f"{name}: $defs already has one of {sorted(_VARIABLE_DEFS)}")
    defs.update(copy.deepcopy(_VARIABLE_DEFS))
    return widened


def _widened(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    for keyword in _SUBSCHEMA_MAPS:
        if isinstance(node.get(keyword), dict):
            node[keyword] = {key: _widened(sub) for key, sub in node[keyword].items()}
    for keyword in _SUBSCHEMAS:
        if keyword in node:
            node[keyword] = _widened(node[keyword])
    for keyword in _SUBSCHEMA_LISTS:
        if isinstance(node.get(keyword), list):
            node[keyword] = [_widened(sub) for sub in node[keyword]]
    reference = _reference_for(node)
    if reference is None:
        return node
    outer = {key: value for key, value in node.items() if key in _EDITOR_ANNOTATIONS}
    inner = {key: value for key, value in node.items() if key not in _EDITOR_ANNOTATIONS}
    return {**outer, "anyOf": [inner, {"$ref": f"#/$defs/{reference}"}]}


def _reference_for(node: dict[str, Any]) -> str | None:
    """Which reference a value schema must also take: "variable" for one that takes text, "wholeVariable"
    for one that takes only true/false or numbers; None when a reference passes it already, or when it
    describes no single value (an object, a list, a $ref alone)."""
    types = node.get("type")
    names = set(types) if isinstance(types, list) else {types} if isinstance(types, str) else set()
    if names - _SCALAR_TYPES:
        return None
    if names and "string" not in names:
        return "wholeVariable"
    return "variable" if _STRICT_VALUE_KEYWORDS & node.keys() else None
