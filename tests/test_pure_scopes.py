"""Tiny tests of reading and writing the two wire shapes of ``approvedScopes`` (reconciler.scopes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.scopes import (
    CATEGORIES,
    CATEGORY_KEY,
    default_category,
    read_scopes,
    settle_categories,
    write_scopes,
)

PURE = settings(max_examples=200, derandomize=True, database=None, deadline=None)

READ: dict[str, Any] = {"name": "read", "description": "Read it"}
WRITE: dict[str, Any] = {"name": "write", "optional": True}
CONN: dict[str, Any] = {"name": "conn", "values": ["c1", "c2"]}
PROFILE: dict[str, Any] = {"name": "profile"}


# ---- read_scopes -------------------------------------------------------------------------------


def test_a_flat_list_reads_as_its_items_in_list_shape() -> None:
    assert read_scopes([READ, CONN]) == ([READ, CONN], "list")


def test_reading_a_flat_list_copies_its_items_and_drops_what_is_not_an_object() -> None:
    value: list[Any] = [READ, "stray", None, 3, CONN]

    items, shape = read_scopes(value)

    assert (items, shape) == ([READ, CONN], "list")
    assert items[0] is not READ


def test_a_categorized_object_reads_as_flat_items_each_remembering_its_category() -> None:
    value = {"connectionsScopes": [CONN], "permissionsScopes": [READ, WRITE], "attributesScopes": [PROFILE]}

    assert read_scopes(value) == (
        [
            {**READ, CATEGORY_KEY: "permissions"},
            {**WRITE, CATEGORY_KEY: "permissions"},
            {**PROFILE, CATEGORY_KEY: "attributes"},
            {**CONN, CATEGORY_KEY: "connections"},
        ],
        "categorized",
    )


def test_a_categorized_object_with_missing_or_null_categories_reads_what_is_there() -> None:
    assert read_scopes({"attributesScopes": None, "connectionsScopes": [CONN]}) == (
        [{**CONN, CATEGORY_KEY: "connections"}],
        "categorized",
    )
    assert read_scopes({}) == ([], "categorized")


def test_null_reads_as_no_scopes_and_no_shape() -> None:
    assert read_scopes(None) == ([], None)


def test_an_empty_list_reads_as_list_shape() -> None:
    assert read_scopes([]) == ([], "list")


@pytest.mark.parametrize("value", ["read", 3, True])
def test_a_value_that_is_neither_a_list_nor_an_object_is_refused(value: Any) -> None:
    with pytest.raises(
        ValueError, match=f"approvedScopes must be a list or an object, got {type(value).__name__}"
    ):
        read_scopes(value)


# ---- default_category and write_scopes ---------------------------------------------------------


def test_the_default_category_of_a_scope_with_values_is_connections() -> None:
    assert default_category({"name": "conn", "values": ["c1"]}) == "connections"


def test_the_default_category_of_a_scope_without_values_is_permissions() -> None:
    assert default_category({"name": "read"}) == "permissions"
    assert default_category({"name": "read", "values": []}) == "permissions"
    assert default_category({"name": "read", "values": None}) == "permissions"


def test_writing_a_list_drops_the_remembered_categories() -> None:
    items = [{**READ, CATEGORY_KEY: "attributes"}, CONN]

    assert write_scopes(items, "list") == [READ, CONN]


def test_writing_categorized_honours_remembered_categories_and_defaults_the_rest() -> None:
    items = [
        {**CONN, CATEGORY_KEY: "permissions"},  # remembered, though it has values
        {**READ, CATEGORY_KEY: "attributes"},
        PROFILE,  # no values: permissions
        {"name": "new-conn", "values": ["c9"]},  # values: connections
    ]

    assert write_scopes(items, "categorized") == {
        "permissionsScopes": [CONN, PROFILE],
        "attributesScopes": [READ],
        "connectionsScopes": [{"name": "new-conn", "values": ["c9"]}],
    }


def test_writing_categorized_leaves_out_empty_categories() -> None:
    assert write_scopes([READ], "categorized") == {"permissionsScopes": [READ]}
    assert write_scopes([], "categorized") == {}


def test_writing_leaves_the_items_unchanged() -> None:
    items = [{**READ, CATEGORY_KEY: "attributes"}]

    write_scopes(items, "list")
    write_scopes(items, "categorized")

    assert items == [{**READ, CATEGORY_KEY: "attributes"}]


# ---- round trips -------------------------------------------------------------------------------

scope_items = st.fixed_dictionaries(
    {"name": st.sampled_from(["read", "write", "cal:read", ""])},
    optional={
        "description": st.sampled_from(["", "Read"]),
        "optional": st.booleans(),
        "values": st.lists(st.sampled_from(["c1", "c2"]), max_size=2),
    },
)


@PURE
@given(st.lists(scope_items, max_size=4))
def test_a_list_round_trips(value: list[dict[str, Any]]) -> None:
    items, shape = read_scopes(value)

    assert shape == "list"
    assert write_scopes(items, shape) == value


@PURE
@given(st.fixed_dictionaries({}, optional=dict.fromkeys(CATEGORIES, st.lists(scope_items, max_size=3))))
def test_a_categorized_object_round_trips_but_for_empty_categories(value: dict[str, Any]) -> None:
    items, shape = read_scopes(value)

    assert shape == "categorized"
    assert write_scopes(items, shape) == {category: scopes for category, scopes in value.items() if scopes}


# ---- categories the API adds later, and settling a manifest's categories ------------------------


def test_a_category_the_api_adds_later_is_read_and_written_back_under_its_own_key() -> None:
    value = {"permissionsScopes": [READ], "consentScopes": [PROFILE]}
    items, shape = read_scopes(value)
    assert shape == "categorized"
    assert items == [{**READ, CATEGORY_KEY: "permissions"}, {**PROFILE, CATEGORY_KEY: "consentScopes"}]
    assert write_scopes(items, "categorized") == value


def test_settling_keeps_a_stated_category_then_the_live_one_then_the_default() -> None:
    live = [{"name": "read", CATEGORY_KEY: "attributes"}, {"name": "conn", CATEGORY_KEY: "permissions"}]
    desired: list[dict[str, Any]] = [
        {"name": "read"},  # lives in attributes: stays there
        {"name": "conn", "values": ["c1"]},  # lives in permissions despite its values: stays there
        {"name": "moved", CATEGORY_KEY: "attributes"},  # stated: wins
        {"name": "new-conn", "values": ["c2"]},  # new, with values: connections
        {"name": "new"},  # new: permissions
    ]
    assert [item[CATEGORY_KEY] for item in settle_categories(desired, live, "categorized")] == [
        "attributes",
        "permissions",
        "attributes",
        "connections",
        "permissions",
    ]


def test_a_stated_category_beats_the_live_one() -> None:
    live = [{"name": "read", CATEGORY_KEY: "attributes"}]
    settled = settle_categories([{"name": "read", CATEGORY_KEY: "permissions"}], live, "categorized")
    assert settled == [{"name": "read", CATEGORY_KEY: "permissions"}]


def test_the_list_shape_has_no_categories_so_settling_drops_them() -> None:
    desired = [{"name": "read", CATEGORY_KEY: "attributes"}, {"name": "write"}]
    assert settle_categories(desired, [], "list") == [{"name": "read"}, {"name": "write"}]
