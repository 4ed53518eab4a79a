"""Field-level comparison of a desired object with a live one, and the object an update sends (pure).

Both sides are first reduced to an *essence*: only the fields the manifest mentions, the kind's
set-like lists sorted (tags, URLs, audiences, scope names) and its keyed lists (scopes, CIMD domain
policies) held as objects by key (``reconciler.kinds``), and a missing value read as the zero value of
the desired one. Equal essences mean no change; otherwise
each differing top-level scalar or list is reported whole, and deepdiff says which paths differ
inside nested objects (scopes, registration, session and CIMD settings). Calling deepdiff only there
keeps a 21,000-object plan well under its CPU budget (see BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from deepdiff import DeepDiff

from reconciler.kinds import FieldShapes, KeyedList
from reconciler.plan import FieldChange


def essence(value: Any, template: Any, shapes: FieldShapes, path: tuple[str, ...] = ()) -> Any:
    """``value`` reduced to the shape of ``template`` (the desired side), normalized for comparison
    by the kind's ``shapes``: set-like lists sorted, keyed lists as objects by key."""
    keyed = shapes.keyed_at(path)
    if keyed is not None:
        return _keyed(value, keyed)
    if path and shapes.is_set(path):
        return sorted({str(v) for v in value or ()})
    if isinstance(template, Mapping):
        source = value if isinstance(value, Mapping) else {}
        return {key: essence(source.get(key), sub, shapes, (*path, key)) for key, sub in template.items()}
    if value is None:
        return _zero_like(template)
    return value


def _keyed(items: Any, shape: KeyedList) -> dict[str, dict[str, Any]]:
    keyed: dict[str, dict[str, Any]] = {}
    for item in items or ():
        if isinstance(item, Mapping):
            full = {
                **shape.defaults,
                **{k: v for k, v in item.items() if k != shape.key and not k.startswith("_")},
            }
            full = {k: (v if v is not None else shape.defaults.get(k)) for k, v in full.items()}
            for name in shape.sets:
                if isinstance(full.get(name), list):
                    full[name] = sorted(full[name])
            keyed[str(item.get(shape.key))] = full
    return keyed


_ABSENT = object()


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


def field_changes(
    live: Mapping[str, Any], desired: Mapping[str, Any], shapes: FieldShapes
) -> tuple[FieldChange, ...]:
    """Every field where ``live`` differs from ``desired``, judged on their essences."""
    # A field equal as it stands has equal essences (``essence`` is a function of the value and the
    # template alone): only the others are normalized, so an object in sync costs one comparison
    # per field, which is what a plan of a large project in sync is made of.
    unequal = {key: value for key, value in desired.items() if live.get(key, _ABSENT) != value}
    if not unequal:
        return ()
    after = essence(unequal, unequal, shapes)
    before = essence(live, unequal, shapes)
    if before == after:
        return ()
    changes: dict[str, FieldChange] = {}
    for key in after:
        if before.get(key) == after[key]:
            continue
        if not isinstance(after[key], Mapping) or not isinstance(before.get(key), Mapping):
            # A scalar or a list differs: reported whole, no need for a structural diff.
            path = render((key,), shapes)
            changes[path] = _itemized(FieldChange(path, before.get(key), after[key]), (key,), shapes)
            continue
        for parts in _changed_paths(before[key], after[key]):
            path = render((key, *parts), shapes)
            if path not in changes:
                change = FieldChange(path, _at(before[key], parts), _at(after[key], parts))
                changes[path] = _itemized(change, (key, *parts), shapes)
    return tuple(changes[path] for path in sorted(changes))


def _itemized(change: FieldChange, parts: tuple[Any, ...], shapes: FieldShapes) -> FieldChange:
    """``change`` with the items added and removed, when it is of a set-like list both sides hold."""
    if not (isinstance(change.before, list) and isinstance(change.after, list) and _set_like(parts, shapes)):
        return change
    before, after = set(change.before), set(change.after)  # essences: sorted strings, no duplicates
    added = tuple(item for item in change.after if item not in before)
    removed = tuple(item for item in change.before if item not in after)
    return replace(change, added=added, removed=removed)


def _set_like(parts: tuple[Any, ...], shapes: FieldShapes) -> bool:
    """Whether the field at ``parts`` (keys of keyed lists among them) is a set-like list: one of the
    kind's sets, or a set attribute of a keyed list's item (a scope's ``values``)."""
    fields: tuple[str, ...] = ()
    item_of: KeyedList | None = None  # the keyed list whose item ``parts`` is inside, just past its key
    skip_key = False
    for index, part in enumerate(parts):
        if skip_key:
            skip_key = False
            continue
        fields = (*fields, str(part))
        keyed = shapes.keyed_at(fields)
        if keyed is not None:
            item_of, skip_key = keyed, True
        elif index == len(parts) - 1:
            return shapes.is_set(fields) or (item_of is not None and str(part) in item_of.sets)
    return False


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


def render(parts: Iterable[Any], shapes: FieldShapes) -> str:
    """``("approvedScopes", "x", "optional")`` → ``approvedScopes["x"].optional``: the item of a
    keyed list is named by its key."""
    text = ""
    fields: tuple[str, ...] = ()  # the path of field names so far, keys of keyed lists left out
    keyed = False
    for part in parts:
        if keyed:
            text += f'["{part}"]'
            keyed = False
            continue
        text += f".{part}" if text else str(part)
        fields = (*fields, str(part))
        keyed = shapes.keyed_at(fields) is not None
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
