"""The two published wire shapes of ``approvedScopes`` and conversion between them (pure).

Descope's guide shows a flat list of scope items; its API reference shows a categorized object
``{"permissionsScopes": [...], "attributesScopes": [...], "connectionsScopes": [...]}``. Internally
scopes are a flat list; each item read from a categorized object remembers its category in
``CATEGORY_KEY`` so that writing it back in that shape puts it where it came from.
"""

from __future__ import annotations

from typing import Any, Literal

ScopesFormat = Literal["list", "categorized"]

CATEGORY_KEY = "_category"
CATEGORIES = ("permissionsScopes", "attributesScopes", "connectionsScopes")


def read_scopes(value: Any) -> tuple[list[dict[str, Any]], ScopesFormat | None]:
    """A flat list of scope items from either shape, and the shape it was in (None when absent)."""
    if value is None:
        return [], None
    if isinstance(value, list):
        return [dict(item) for item in value if isinstance(item, dict)], "list"
    if isinstance(value, dict):
        items: list[dict[str, Any]] = []
        for category in CATEGORIES:
            for item in value.get(category) or []:
                if isinstance(item, dict):
                    items.append({**item, CATEGORY_KEY: category})
        return items, "categorized"
    raise ValueError(f"approvedScopes must be a list or an object, got {type(value).__name__}")


def default_category(item: dict[str, Any]) -> str:
    """Where a scope goes in the categorized shape when it has no remembered category."""
    return "connectionsScopes" if item.get("values") else "permissionsScopes"


def write_scopes(items: list[dict[str, Any]], shape: ScopesFormat) -> Any:
    """The wire value of ``items`` in ``shape``; remembered categories are honoured."""
    clean = [{k: v for k, v in item.items() if k != CATEGORY_KEY} for item in items]
    if shape == "list":
        return clean
    grouped: dict[str, list[dict[str, Any]]] = {category: [] for category in CATEGORIES}
    for item, plain in zip(items, clean, strict=True):
        category = item.get(CATEGORY_KEY) or default_category(item)
        grouped.setdefault(category, []).append(plain)
    return {category: scopes for category, scopes in grouped.items() if scopes}
