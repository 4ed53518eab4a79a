"""The terminal rendering of plans: symbols, summary line, colour only when asked."""

from __future__ import annotations

from reconciler.plan import Action, Change, FieldChange, Kind, Plan, Withheld
from reconciler.render.text import render_plan_text, summary_line


def _plan(*changes: Change, withheld: tuple[Withheld, ...] = ()) -> Plan:
    return Plan(project_id="P2", ownership_tag="o", changes=changes, withheld=withheld)


UPDATE = Change(
    Kind.SERVER, Action.UPDATE, "calendar", id="MS1", fields=(FieldChange("description", "a", "b"),)
)
ROTATE = Change(
    Kind.CLIENT,
    Action.ROTATE_SECRET,
    "bot",
    server="calendar",
    fields=(FieldChange("secret.rotation", None, "x"),),
)
ADOPT = Change(Kind.CLIENT, Action.ADOPT, "old", server="calendar", notes=("takes over",))
DELETE = Change(Kind.SERVER, Action.DELETE, "legacy", id="MS2")


def test_summary_line_counts_and_plurals() -> None:
    assert (
        summary_line(_plan(UPDATE, ROTATE))
        == "Plan: 0 to create, 1 to update, 0 to delete, 1 secret to rotate."
    )
    assert summary_line(_plan(ADOPT, DELETE, ROTATE, ROTATE)) == (
        "Plan: 0 to create, 0 to update, 1 to adopt, 1 to delete, 2 secrets to rotate."
    )


def test_each_action_has_its_symbol_and_only_changed_fields() -> None:
    text = render_plan_text(_plan(UPDATE, ADOPT, ROTATE, DELETE), colour=False)
    assert text == (
        "Project P2\n\n"
        '  ~ server "calendar" will be updated in place\n'
        '      ~ description: "a" -> "b"\n'
        '  > client "calendar/old" will be adopted (taken over) and updated\n'
        "      # takes over\n"
        '  * client "calendar/bot" will have its secret rotated\n'
        '      + secret.rotation: "x"\n'
        '  - server "legacy" will be deleted\n\n'
        "Plan: 0 to create, 1 to update, 1 to adopt, 1 to delete, 1 secret to rotate.\n"
    )
    assert "\x1b[" not in text


def test_colour_is_ansi_and_only_on_request() -> None:
    coloured = render_plan_text(_plan(UPDATE, DELETE), colour=True)
    assert '\x1b[33m~ server "calendar" will be updated in place\x1b[0m' in coloured
    assert '\x1b[31m- server "legacy" will be deleted\x1b[0m' in coloured


def test_an_empty_plan_says_so_and_lists_what_it_keeps() -> None:
    text = render_plan_text(_plan(withheld=(Withheld('server "x"', "x", "protected"),)))
    assert (
        text
        == "Project P2\n\nNo changes will be made; the objects below differ from the manifests and are kept.\n"
        '\nNot changed (1):\n  server "x" is kept: protected\n'
    )


HOSTILE = Change(
    Kind.CLIENT,
    Action.UPDATE,
    'bot\x1b[2K\r+ server "fake" will be created',
    server="cal\x1b]0;pwned\x07",
    id="C1",
    fields=(
        FieldChange("description", "old\u202eevil", "new\x9bx"),
        FieldChange('policies["\x1b[31m.example.com"]', None, True),
    ),
    notes=("note\x07\nsecond line",),
)


def test_values_from_manifests_and_the_api_are_escaped_and_our_colours_kept() -> None:
    withheld = (Withheld('server "w\x1b[8m"', "w", "kept\r\u2066"),)
    plain = render_plan_text(_plan(HOSTILE, withheld=withheld), colour=False)
    assert plain == (
        "Project P2\n\n"
        '  ~ client "cal\\x1b]0;pwned\\x07/bot\\x1b[2K\\r+ server "fake" will be created" will be updated '
        "in place\n"
        '      ~ description: "old\\u202eevil" -> "new\\x9bx"\n'
        '      + policies["\\x1b[31m.example.com"]: true\n'
        "      # note\\x07\\nsecond line\n\n"
        "Not changed (1):\n"
        '  server "w\\x1b[8m" is kept: kept\\r\\u2066\n\n'
        "Plan: 0 to create, 1 to update, 0 to delete, 0 secrets to rotate.\n"
    )
    coloured = render_plan_text(_plan(HOSTILE, withheld=withheld), colour=True)
    assert coloured.count("\x1b") == 2 * len(HOSTILE.fields) + 2  # our own codes: a pair per coloured line
    assert '      \x1b[33m~ description: "old\\u202eevil" -> "new\\x9bx"\x1b[0m\n' in coloured
