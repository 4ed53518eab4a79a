"""Approved scopes and their categories: the two wire shapes, and the category a scope belongs in (pure).

Descope's API reference and its own Go SDK (go-sdk pull request #793, ``MCPApprovedScopes``) use a
categorized object ``{"permissionsScopes": [...], "attributesScopes": [...], "connectionsScopes":
[...]}``; the guide shows a flat list. Internally scopes are a flat list of items, and an item read
from the categorized object keeps its category in ``CATEGORY_KEY`` (``permissions``, ``attributes``,
``connections``; a category the API adds later keeps its wire name) so that the planner can compare
it and writing puts every scope back where it belongs. Unknown keys of the object are kept likewise.

Where a manifest leaves a scope's category out, :func:`settle_categories` decides it: the category
the scope has on the live server when it has one there (so an edit never moves it), else
``connections`` for a scope with values and ``permissions`` for any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from reconciler.descope import assumptions

ScopesFormat = Literal["list", "categorized"]

CATEGORY_KEY = "category"
# The categories a manifest may name, and the key of each in the wire object.
CATEGORY_WIRE_KEYS = {
    "permissions": "permissionsScopes",
    "attributes": "attributesScopes",
    "connections": "connectionsScopes",
}
CATEGORIES = tuple(CATEGORY_WIRE_KEYS.values())  # the wire keys, in the order they are written
_WIRE_SUFFIX = "Scopes"


def category_of_wire_key(key: str) -> str:
    """``attributesScopes`` → ``attributes``; a key of another form is its own category."""
    known = next((name for name, wire in CATEGORY_WIRE_KEYS.items() if wire == key), None)
    return known or key


def wire_key(category: str) -> str:
    return CATEGORY_WIRE_KEYS.get(category, category)


def read_scopes(value: Any) -> tuple[list[dict[str, Any]], ScopesFormat | None]:
    """A flat list of scope items from either shape, and the shape it was in (None when absent)."""
    if value is None:
        return [], None
    if isinstance(value, list):
        return [dict(item) for item in value if isinstance(item, dict)], "list"
    if isinstance(value, dict):
        items: list[dict[str, Any]] = []
        known = [key for key in CATEGORIES if key in value]
        others = sorted(key for key in value if key not in CATEGORY_WIRE_KEYS.values())
        for key in (*known, *others):
            for item in value.get(key) or []:
                if isinstance(item, dict):
                    items.append({**item, CATEGORY_KEY: category_of_wire_key(key)})
        return items, "categorized"
    raise ValueError(f"approvedScopes must be a list or an object, got {type(value).__name__}")


def default_category(item: Mapping[str, Any]) -> str:
    """Where a scope goes when neither the manifest nor the live server says: a scope with values
    grants access to those connections; any other is a permission."""
    return assumptions.DEFAULT_CATEGORY_WITH_VALUES if item.get("values") else assumptions.DEFAULT_CATEGORY


def write_scopes(items: Sequence[Mapping[str, Any]], shape: ScopesFormat) -> Any:
    """The wire value of ``items`` in ``shape``: in the categorized object each item goes to its
    category (the default one when it has none); the list shape has no categories."""
    clean = [{k: v for k, v in item.items() if k != CATEGORY_KEY} for item in items]
    if shape == "list":
        return clean
    grouped: dict[str, list[dict[str, Any]]] = {key: [] for key in CATEGORIES}
    for item, plain in zip(items, clean, strict=True):
        category = str(item.get(CATEGORY_KEY) or default_category(item))
        grouped.setdefault(wire_key(category), []).append(plain)
    return {key: scopes for key, scopes in grouped.items() if scopes}


def settle_categories(
    desired: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any]], shape: ScopesFormat
) -> list[dict[str, Any]]:
    """``desired`` scope items, each with the category it will have: the one the manifest states, else
    the one the same-named live scope has, else the default. In the list shape there are no
    categories, so none is kept (a manifest's category cannot be stored there)."""
    if shape == "list":
        return [{k: v for k, v in item.items() if k != CATEGORY_KEY} for item in desired]
    live_categories = {
        str(item.get("name")): str(item[CATEGORY_KEY]) for item in live if item.get(CATEGORY_KEY)
    }
    settled = []
    for item in desired:
        category = (
            item.get(CATEGORY_KEY) or live_categories.get(str(item.get("name"))) or default_category(item)
        )
        # In the order a manifest writes a scope's fields, so that plans read alike either way.
        head = {k: v for k, v in item.items() if k not in (CATEGORY_KEY, "values")}
        tail = {"values": item["values"]} if "values" in item else {}
        settled.append({**head, CATEGORY_KEY: category, **tail})
    return settled
