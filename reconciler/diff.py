"""Field-level comparison of a desired object with a live one, and the object an update sends (pure).

Both sides are first reduced to an *essence*: only the fields the manifest mentions, set-like lists
sorted (tags, URLs, audiences, scope names), scopes and CIMD domain policies keyed by name, and a
missing value read as the zero value of the desired one. Equal essences mean no change; otherwise
each differing top-level scalar or list is reported whole, and deepdiff says which paths differ
inside nested objects (scopes, registration, session and CIMD settings). Calling deepdiff only there
keeps a 21,000-object plan well under its CPU budget (see BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deepdiff import DeepDiff

from reconciler.plan import FieldChange

SET_FIELDS = frozenset(
    {"tags", "audienceWhitelist", "approvedCallbackUrls", "scopes", "allowedTenants", "values"}
)
SCOPE_DEFAULTS: dict[str, Any] = {"description": "", "optional": False, "values": []}


def essence(value: Any, template: Any, path: tuple[str, ...] = ()) -> Any:
    """``value`` reduced to the shape of ``template`` (the desired side), normalized for comparison."""
    name = path[-1] if path else ""
    if name == "approvedScopes":
        return _keyed(value, "name", SCOPE_DEFAULTS)
    if name == "policies":
        return _keyed(value, "domainPattern", {"enabled": False})
    if name in SET_FIELDS:
        return sorted({str(v) for v in value or ()})
    if isinstance(template, Mapping):
        source = value if isinstance(value, Mapping) else {}
        return {key: essence(source.get(key), sub, (*path, key)) for key, sub in template.items()}
    if value is None:
        return _zero_like(template)
    return value


def _keyed(items: Any, key: str, defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    keyed: dict[str, dict[str, Any]] = {}
    for item in items or ():
        if isinstance(item, Mapping):
            full = {**defaults, **{k: v for k, v in item.items() if k != key and not k.startswith("_")}}
            full = {k: (v if v is not None else defaults.get(k)) for k, v in full.items()}
            if isinstance(full.get("values"), list):
                full["values"] = sorted(full["values"])
            keyed[str(item.get(key))] = full
    return keyed


def _zero_like(template: Any) -> Any:
    if isinstance(template, bool):
        return False
    if isinstance(template, int | float):
        return 0
    if isinstance(template, str):
        return ""
    if isinstance(template, list):
        return []
    return None


def field_changes(live: Mapping[str, Any], desired: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every field where ``live`` differs from ``desired``, judged on their essences."""
    after = essence(desired, desired)
    before = essence(live, desired)
    if before == after:
        return ()
    changes: dict[str, FieldChange] = {}
    for key in after:
        if before.get(key) == after[key]:
            continue
        if not isinstance(after[key], Mapping) or not isinstance(before.get(key), Mapping):
            # A scalar or a list differs: reported whole, no need for a structural diff.
            changes[render((key,))] = FieldChange(render((key,)), before.get(key), after[key])
            continue
        for parts in _changed_paths(before[key], after[key]):
            path = render((key, *parts))
            if path not in changes:
                changes[path] = FieldChange(path, _at(before[key], parts), _at(after[key], parts))
    return tuple(changes[path] for path in sorted(changes))


def _changed_paths(before: Any, after: Any) -> Iterable[tuple[Any, ...]]:
    tree = DeepDiff(before, after, view="tree", threshold_to_diff_deeper=0)
    for report in tree.values():
        for level in report:
            parts = level.path(output_format="list")
            cut = next((i for i, part in enumerate(parts) if isinstance(part, int)), len(parts))
            yield tuple(parts[:cut])  # a change inside a list is a change of the list


def _at(value: Any, parts: tuple[Any, ...]) -> Any:
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def render(parts: Iterable[Any]) -> str:
    """``("approvedScopes", "x", "optional")`` → ``approvedScopes["x"].optional``."""
    text = ""
    keyed = False
    for part in parts:
        if keyed:
            text += f'["{part}"]'
            keyed = False
        else:
            text += f".{part}" if text else str(part)
        keyed = part in ("approvedScopes", "policies")
    return text


def overlay(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The object an update sends: ``live`` with ``desired`` laid over it.

    Nested objects merge key by key, so an unmentioned setting inside one survives; lists and
    scalars are replaced. Fields the manifest does not mention, unknown ones included, are kept.
    """
    merged = dict(live)
    for key, value in desired.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = overlay(current, value)
        else:
            merged[key] = value
    return merged
