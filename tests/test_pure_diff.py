"""Tiny example tests of the differ's pure functions: essence, field_changes, render and overlay.

Each kind normalizes its own fields (``reconciler.kinds``): a list is a set, or a list of objects keyed
by one attribute, only where the kind's FieldShapes say so, at that path, whatever the field's name.
"""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

from reconciler.diff import essence, field_changes, overlay, render
from reconciler.kinds import CLIENT, SERVER, FieldShapes, KeyedList
from reconciler.plan import FieldChange

SERVER_SHAPES = SERVER.shapes
CLIENT_SHAPES = CLIENT.shapes
NO_SHAPES = FieldShapes()
POLICY = "*.example.com"


def _policies(*items: dict[str, Any]) -> dict[str, Any]:
    return {"cimdSettings": {"domainPolicies": {"policies": list(items)}}}


# ---- essence: set-like lists -------------------------------------------------------------------


def test_essence_sorts_and_deduplicates_the_server_set_like_lists() -> None:
    live = {
        "tags": ["team:b", "team:a", "team:b"],
        "audienceWhitelist": ["https://z.test", "https://a.test", "https://z.test"],
        "approvedCallbackUrls": ["https://cb2.test", "https://cb1.test"],
    }
    template: dict[str, Any] = {"tags": [], "audienceWhitelist": [], "approvedCallbackUrls": []}

    assert essence(live, template, SERVER_SHAPES) == {
        "tags": ["team:a", "team:b"],
        "audienceWhitelist": ["https://a.test", "https://z.test"],
        "approvedCallbackUrls": ["https://cb1.test", "https://cb2.test"],
    }


def test_essence_sorts_and_deduplicates_the_client_set_like_lists() -> None:
    live = {
        "tags": ["y", "x", "y"],
        "scopes": ["write", "read", "read"],
        "approvedCallbackUrls": ["https://b.test", "https://a.test"],
        "allowedTenants": ["T2", "T1", "T2"],
    }
    template: dict[str, Any] = {"tags": [], "scopes": [], "approvedCallbackUrls": [], "allowedTenants": []}

    assert essence(live, template, CLIENT_SHAPES) == {
        "tags": ["x", "y"],
        "scopes": ["read", "write"],
        "approvedCallbackUrls": ["https://a.test", "https://b.test"],
        "allowedTenants": ["T1", "T2"],
    }


def test_a_set_of_one_kind_is_an_ordered_list_for_a_kind_that_does_not_declare_it() -> None:
    # "scopes" is a set for clients only; servers and a kind without shapes keep the order and repeats.
    value = {"scopes": ["b", "a", "b"], "audienceWhitelist": ["z", "a"]}
    template: dict[str, Any] = {"scopes": [], "audienceWhitelist": []}

    assert essence(value, template, CLIENT_SHAPES) == {"scopes": ["a", "b"], "audienceWhitelist": ["z", "a"]}
    assert essence(value, template, SERVER_SHAPES) == {
        "scopes": ["b", "a", "b"],
        "audienceWhitelist": ["a", "z"],
    }
    assert essence(value, template, NO_SHAPES) == {"scopes": ["b", "a", "b"], "audienceWhitelist": ["z", "a"]}


def test_a_made_up_kind_that_declares_only_tags_keeps_scopes_in_order() -> None:
    shapes = FieldShapes(sets=frozenset({("tags",)}))

    assert essence({"tags": ["b", "a"], "scopes": ["b", "a"]}, {"tags": [], "scopes": []}, shapes) == {
        "tags": ["a", "b"],
        "scopes": ["b", "a"],
    }


def test_a_set_is_declared_by_its_path_not_by_its_name() -> None:
    # ("tags",) is a set for servers; a "tags" nested in another object is not.
    value = {"tags": ["b", "a"], "extra": {"tags": ["b", "a"]}}

    assert essence(value, {"tags": [], "extra": {"tags": []}}, SERVER_SHAPES) == {
        "tags": ["a", "b"],
        "extra": {"tags": ["b", "a"]},
    }


def test_a_missing_or_null_set_reads_as_empty() -> None:
    assert essence({"tags": None}, {"tags": ["a"], "audienceWhitelist": ["b"]}, SERVER_SHAPES) == {
        "tags": [],
        "audienceWhitelist": [],
    }


# ---- essence: keyed lists ----------------------------------------------------------------------


def test_approved_scopes_are_keyed_by_name_with_defaults_and_sorted_values() -> None:
    live = {
        "approvedScopes": [
            {"name": "write", "values": ["conn-2", "conn-1"]},
            {"name": "read", "description": "Read it", "optional": True, "_category": "permissionsScopes"},
        ]
    }

    assert essence(live, {"approvedScopes": []}, SERVER_SHAPES) == {
        "approvedScopes": {
            "write": {"description": "", "optional": False, "values": ["conn-1", "conn-2"]},
            "read": {"description": "Read it", "optional": True, "values": []},
        }
    }


def test_null_attributes_of_a_scope_read_as_its_defaults() -> None:
    live = {"approvedScopes": [{"name": "read", "description": None, "optional": None, "values": None}]}

    assert essence(live, {"approvedScopes": []}, SERVER_SHAPES) == {
        "approvedScopes": {"read": {"description": "", "optional": False, "values": []}}
    }


def test_domain_policies_are_keyed_by_pattern_with_enabled_false_by_default() -> None:
    live = {
        "cimdSettings": {
            "enabled": True,
            "domainPolicies": {
                "policies": [{"domainPattern": POLICY}, {"domainPattern": "corp.test", "enabled": True}]
            },
        }
    }
    template = _policies()

    assert essence(live, template, SERVER_SHAPES) == {
        "cimdSettings": {
            "domainPolicies": {"policies": {POLICY: {"enabled": False}, "corp.test": {"enabled": True}}}
        }
    }


def test_approved_scopes_are_a_plain_list_for_a_kind_that_does_not_key_them() -> None:
    scopes = [{"name": "b"}, {"name": "a", "optional": True}]

    assert essence({"approvedScopes": scopes}, {"approvedScopes": []}, CLIENT_SHAPES) == {
        "approvedScopes": scopes
    }


def test_a_made_up_keyed_list_uses_its_own_key_defaults_and_sets() -> None:
    shapes = FieldShapes(
        keyed=MappingProxyType(
            {("rules",): KeyedList("id", MappingProxyType({"on": True}), frozenset({"hosts"}))}
        )
    )
    live = {"rules": [{"id": "r1", "hosts": ["b", "a"]}, {"id": "r2", "on": False}]}

    assert essence(live, {"rules": []}, shapes) == {
        "rules": {"r1": {"on": True, "hosts": ["a", "b"]}, "r2": {"on": False}}
    }


# ---- essence: the template's shape and zero values ---------------------------------------------


def test_only_the_template_keys_are_kept() -> None:
    live = {
        "description": "d",
        "logo": "l",
        "futureField": {"x": 1},
        "sessionSettings": {"enabled": True, "a": 1},
    }

    assert essence(live, {"description": "", "sessionSettings": {"enabled": False}}, SERVER_SHAPES) == {
        "description": "d",
        "sessionSettings": {"enabled": True},
    }


def test_a_missing_or_null_value_reads_as_the_zero_value_of_the_template() -> None:
    template = {"b": True, "n": 5, "s": "x", "l": ["q"], "nested": {"m": 7}, "f": 1.5}
    zero = {"b": False, "n": 0, "s": "", "l": [], "nested": {"m": 0}, "f": 0}

    assert essence({}, template, NO_SHAPES) == zero
    assert essence(None, template, NO_SHAPES) == zero
    assert essence(dict.fromkeys(template), template, NO_SHAPES) == zero


def test_a_present_value_is_kept_as_it_is() -> None:
    assert essence({"b": False, "n": 0, "s": "x"}, {"b": True, "n": 5, "s": ""}, NO_SHAPES) == {
        "b": False,
        "n": 0,
        "s": "x",
    }


# ---- field_changes -----------------------------------------------------------------------------


def test_no_change_when_equal_after_normalization() -> None:
    live = {
        "name": "calendar",
        "tags": ["b", "a", "a"],
        "approvedScopes": [{"name": "x", "values": ["2", "1"], "_category": "connectionsScopes"}],
        "futureField": 1,
    }
    desired = {
        "tags": ["a", "b"],
        "approvedScopes": [{"name": "x", "description": "", "optional": False, "values": ["1", "2"]}],
    }

    assert field_changes(live, desired, SERVER_SHAPES) == ()


def test_no_change_when_live_leaves_out_zero_values() -> None:
    desired = {
        "skipConsentScreen": False,
        "description": "",
        "tags": [],
        "sessionSettings": {"enabled": False, "sessionTokenExpiration": 0},
        **_policies({"domainPattern": POLICY, "enabled": False}),
    }
    live = {"id": "S1", **_policies({"domainPattern": POLICY})}

    assert field_changes(live, desired, SERVER_SHAPES) == ()


def test_a_scalar_change_is_reported_whole() -> None:
    assert field_changes({"description": "old"}, {"description": "new"}, SERVER_SHAPES) == (
        FieldChange("description", "old", "new"),
    )


def test_a_missing_scalar_is_reported_as_its_zero_value() -> None:
    assert field_changes({}, {"skipConsentScreen": True}, SERVER_SHAPES) == (
        FieldChange("skipConsentScreen", False, True),
    )


def test_a_set_like_list_change_names_each_item_added_and_removed() -> None:
    assert field_changes({"tags": ["b", "a"]}, {"tags": ["c", "a"]}, SERVER_SHAPES) == (
        FieldChange("tags", ["a", "b"], ["a", "c"], added=("c",), removed=("b",)),
    )
    urls = [f"https://agents.example.com/{i}" for i in range(10)]
    (change,) = field_changes(
        {"approvedCallbackUrls": urls},
        {"approvedCallbackUrls": [*urls, "https://x.example/cb"]},
        SERVER_SHAPES,
    )
    assert (change.added, change.removed) == (("https://x.example/cb",), ())


def test_an_order_change_is_a_change_only_for_a_list_that_is_not_a_set() -> None:
    live, desired = {"scopes": ["b", "a"]}, {"scopes": ["a", "b"]}

    assert field_changes(live, desired, CLIENT_SHAPES) == ()
    # Not a set: its order matters, so it is reported whole, without items added or removed.
    assert field_changes(live, desired, SERVER_SHAPES) == (FieldChange("scopes", ["b", "a"], ["a", "b"]),)


def test_a_change_inside_a_scope_is_named_by_the_scope() -> None:
    live = {"approvedScopes": [{"name": "x"}, {"name": "y", "optional": True}]}
    desired = {"approvedScopes": [{"name": "x", "optional": True}, {"name": "y", "optional": True}]}

    assert field_changes(live, desired, SERVER_SHAPES) == (
        FieldChange('approvedScopes["x"].optional', False, True),
    )


def test_a_change_of_a_scope_values_names_the_scope_and_each_value() -> None:
    live = {"approvedScopes": [{"name": "x", "values": ["a", "c"]}]}
    desired = {"approvedScopes": [{"name": "x", "values": ["b", "a"]}]}

    assert field_changes(live, desired, SERVER_SHAPES) == (
        FieldChange('approvedScopes["x"].values', ["a", "c"], ["a", "b"], added=("b",), removed=("c",)),
    )


def test_an_added_and_a_removed_scope_are_reported_whole() -> None:
    live = {"approvedScopes": [{"name": "old", "description": "d"}]}
    desired = {"approvedScopes": [{"name": "new", "values": ["c"]}]}

    assert field_changes(live, desired, SERVER_SHAPES) == (
        FieldChange('approvedScopes["new"]', None, {"description": "", "optional": False, "values": ["c"]}),
        FieldChange('approvedScopes["old"]', {"description": "d", "optional": False, "values": []}, None),
    )


def test_a_domain_policy_change_is_named_by_its_pattern() -> None:
    live = {"cimdSettings": {"enabled": True, "domainPolicies": {"policies": [{"domainPattern": POLICY}]}}}
    desired = _policies({"domainPattern": POLICY, "enabled": True})

    assert field_changes(live, desired, SERVER_SHAPES) == (
        FieldChange(f'cimdSettings.domainPolicies.policies["{POLICY}"].enabled', False, True),
    )


def test_a_nested_setting_change_is_named_by_its_path_and_unmentioned_settings_are_ignored() -> None:
    live = {"sessionSettings": {"enabled": False, "sessionTokenExpiration": 5, "userTemplateId": "t"}}

    assert field_changes(live, {"sessionSettings": {"enabled": True}}, SERVER_SHAPES) == (
        FieldChange("sessionSettings.enabled", False, True),
    )


def test_live_fields_the_manifest_does_not_mention_are_ignored() -> None:
    live = {"id": "S1", "description": "same", "logo": "l", "futureField": [1, 2]}

    assert field_changes(live, {"description": "same"}, SERVER_SHAPES) == ()


def test_changes_are_sorted_by_path() -> None:
    live = {"tags": ["a"], "description": "old", "approvedScopes": [{"name": "b"}, {"name": "a"}]}
    desired = {
        "tags": ["z"],
        "description": "new",
        "approvedScopes": [{"name": "b", "optional": True}, {"name": "a", "description": "A"}],
    }

    assert [change.path for change in field_changes(live, desired, SERVER_SHAPES)] == [
        'approvedScopes["a"].description',
        'approvedScopes["b"].optional',
        "description",
        "tags",
    ]


# ---- render ------------------------------------------------------------------------------------


def test_render_names_a_scope_by_its_key() -> None:
    assert render(("approvedScopes", "x", "optional"), SERVER_SHAPES) == 'approvedScopes["x"].optional'


def test_render_names_a_domain_policy_by_its_pattern() -> None:
    parts = ("cimdSettings", "domainPolicies", "policies", POLICY, "enabled")

    assert render(parts, SERVER_SHAPES) == f'cimdSettings.domainPolicies.policies["{POLICY}"].enabled'


def test_render_joins_plain_fields_with_dots() -> None:
    assert render(("sessionSettings", "enabled"), SERVER_SHAPES) == "sessionSettings.enabled"
    assert render(("approvedScopes",), SERVER_SHAPES) == "approvedScopes"
    assert render((), SERVER_SHAPES) == ""


def test_render_keys_only_the_kind_keyed_paths() -> None:
    # Clients key nothing; a "policies" elsewhere than cimdSettings.domainPolicies is a plain field.
    assert render(("approvedScopes", "x", "optional"), CLIENT_SHAPES) == "approvedScopes.x.optional"
    assert render(("other", "policies", "p"), SERVER_SHAPES) == "other.policies.p"


# ---- overlay -----------------------------------------------------------------------------------


def test_overlay_merges_nested_objects_and_replaces_lists_and_scalars() -> None:
    live = {
        "id": "S1",
        "description": "old",
        "sessionSettings": {"enabled": False, "sessionTokenExpiration": 5},
        "tags": ["a", "b"],
        "approvedScopes": [{"name": "x", "id": "kept-only-if-sent"}],
        "futureField": {"x": 1},
    }
    desired = {
        "description": "new",
        "sessionSettings": {"enabled": True},
        "tags": ["c"],
        "approvedScopes": [{"name": "x"}],
    }

    assert overlay(live, desired) == {
        "id": "S1",
        "description": "new",
        "sessionSettings": {"enabled": True, "sessionTokenExpiration": 5},
        "tags": ["c"],
        "approvedScopes": [{"name": "x"}],
        "futureField": {"x": 1},
    }


def test_overlay_merges_at_every_depth() -> None:
    live = {
        "cimdSettings": {"enabled": True, "domainPolicies": {"policies": [{"domainPattern": "a"}], "x": 1}}
    }
    desired: dict[str, Any] = {"cimdSettings": {"domainPolicies": {"policies": []}}}

    assert overlay(live, desired) == {
        "cimdSettings": {"enabled": True, "domainPolicies": {"policies": [], "x": 1}}
    }


def test_overlay_replaces_a_value_whose_type_differs() -> None:
    assert overlay({"a": None, "b": {"c": 1}}, {"a": {"c": 2}, "b": None}) == {"a": {"c": 2}, "b": None}


def test_overlay_leaves_its_inputs_unchanged() -> None:
    live = {"sessionSettings": {"enabled": False, "n": 1}, "tags": ["a"]}
    desired = {"sessionSettings": {"enabled": True}, "tags": ["b"]}
    live_before, desired_before = copy.deepcopy(live), copy.deepcopy(desired)

    overlay(live, desired)

    assert (live, desired) == (live_before, desired_before)
