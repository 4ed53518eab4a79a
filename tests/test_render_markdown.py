"""The markdown renderer (marker, banners, summary, details, escaping, the cap); plan and drift JSON schemas."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.descope import assumptions
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.drift import DriftReport, Unmanaged, detect_drift
from reconciler.manifest import load_manifest
from reconciler.models import Manifest
from reconciler.plan import (
    Action,
    Cascaded,
    Change,
    FieldChange,
    Kind,
    Plan,
    Provenance,
    SecretRemoval,
    SecretTarget,
    Withheld,
)
from reconciler.planner import PlanOptions, Target, build_plan
from reconciler.render.markdown import (
    MARKDOWN_LIMIT,
    MIN_LIMIT,
    code,
    drift_marker,
    html_text,
    md_text,
    plan_marker,
    render_drift_markdown,
    render_plan_markdown,
)
from reconciler.schemas import format_checker, load_schema, schema_registry
from reconciler.tags import PROTECT_TAG, ROTATION_PREFIX
from reconciler.textsafe import visible
from tests.conftest import EXAMPLES

OWNER = "managed-by:mcp-reconciler"
FP = "0123456789abcdef"
HOSTILE = "a|b <script>alert(1)</script> `x` *y* [z](javascript:0) @octocat & co"
SUMMARY = re.compile(r"^<summary>(.*)</summary>$", re.M)
BLOCK = re.compile(r"^<details>\n.*?^</details>$", re.M | re.S)
OMITTED = re.compile(r"^_… ([\d,]+) more changed objects? (?:is|are) not shown .*_$")


def client(action: Action, name: str, *, server: str = "calendar", **overrides: Any) -> Change:
    live = action is not Action.CREATE
    base = Change(
        Kind.CLIENT,
        action,
        name,
        server=server,
        id=f"C-{name}" if live else None,
        server_id=f"S-{server}",
        fingerprint=FP if live else None,
    )
    return replace(base, **overrides)


def server(action: Action, name: str, **overrides: Any) -> Change:
    live = action is not Action.CREATE
    base = Change(
        Kind.SERVER,
        action,
        name,
        id=f"S-{name}" if live else None,
        fingerprint=FP if live else None,
        surface="mcp-servers",
    )
    return replace(base, **overrides)


def plan_of(*changes: Change, **settings: Any) -> Plan:
    return Plan("P2abc", OWNER, changes, **settings)


def everything_plan() -> Plan:
    """Every action, secret targets, withheld changes, a partial plan and every kind of sink."""
    vault = SecretTarget("vault", "calendar/ci-agent", "2026-11-01")
    changes = (
        server(
            Action.CREATE, "crm", fields=(FieldChange("description", None, "CRM"),), desired={"name": "crm"}
        ),
        server(Action.UPDATE, "calendar", fields=(FieldChange("description", "old", "new"),), desired={}),
        client(
            Action.CREATE, "ci-agent", fields=(FieldChange("scopes", None, ["calendar:read"]),), secret=vault
        ),
        client(
            Action.CREATE, "copilot", server="crm", server_id=None, secret=SecretTarget("", "crm/copilot")
        ),
        client(
            Action.ADOPT,
            "handmade",
            secret=SecretTarget("vault", "calendar/handmade"),
            notes=("takes over the live object",),
        ),
        client(
            Action.ROTATE_SECRET,
            "ci-agent",
            fields=(FieldChange("secret.rotation", None, "2026-11-01"),),
            secret=vault,
        ),
        client(Action.DELETE, "old-bot"),
        server(
            Action.DELETE,
            "legacy",
            cascade=(Cascaded(Kind.CLIENT, "a", "C-a"), Cascaded(Kind.CLIENT, "b", "C-b")),
            removes_secrets=(SecretRemoval("a", "cid-a", "local", "legacy/a"),),
        ),
    )
    made_from = Provenance(
        paths=("manifests",),
        var_files=("envs/prod.yaml",),
        prune=True,
        digests={'sink "local"': "0" * 32, 'server "calendar"': "1" * 32},
    )
    withheld = (
        Withheld('client "calendar/keep"', "calendar", "protected (protect: true when last applied)"),
    )
    targets = ("server:calendar", "server:crm", "server:legacy")
    return plan_of(*changes, partial=True, targets=targets, withheld=withheld, made_from=made_from)


def many_updates(count: int) -> Plan:
    fields = (
        FieldChange("description", "Calendar agent", "Calendar agent for the scheduling team"),
        FieldChange("scopes", ["calendar:read"], ["calendar:read", "calendar:write"]),
        FieldChange("tags", ["team:a"], ["team:a", "tier:gold"]),
    )
    return plan_of(*(client(Action.UPDATE, f"agent-{i:04d}", fields=fields) for i in range(count)))


# ---- the head --------------------------------------------------------------------------------------


def test_a_small_plan_renders_exactly() -> None:
    plan = plan_of(
        server(Action.UPDATE, "calendar", fields=(FieldChange("description", "Calendar", "Calendar tools"),)),
        client(
            Action.CREATE,
            "ci-agent",
            fields=(FieldChange("name", None, "ci-agent"), FieldChange("scopes", None, ["calendar:read"])),
            secret=SecretTarget("vault", "calendar/ci-agent"),
        ),
        client(Action.DELETE, "old-bot"),
    )
    assert plan.change_set.startswith("sha256:")
    assert render_plan_markdown(plan) == (
        "<!-- mcp-reconciler:plan project=P2abc -->\n"  # noqa: S608 - markdown that says "update", not SQL
        f"<!-- mcp-reconciler:changeset {plan.change_set} -->\n"
        "## mcp-reconciler plan: project `P2abc`\n\n"
        "> [!WARNING]\n"
        "> This plan **deletes 1 object** (1 client). Review the deletes below before you apply it.\n\n"
        "| action | count |\n| --- | ---: |\n"
        "| create | 1 |\n| update | 1 |\n| adopt | 0 |\n| rotate-secret | 0 |\n| delete | 1 |\n\n"
        f"Change set `{plan.change_set}`\n\n"
        "### Changes (3)\n\n"
        '<details>\n<summary>~ update server "calendar"</summary>\n\n'
        "| field | before | after |\n| --- | --- | --- |\n"
        '| `description` | `"Calendar"` | `"Calendar tools"` |\n\n'
        "- id `S-calendar`\n\n</details>\n\n"
        '<details>\n<summary>+ create client "calendar/ci-agent"</summary>\n\n'
        "| field | value |\n| --- | --- |\n"
        '| `name` | `"ci-agent"` |\n| `scopes` | `["calendar:read"]` |\n\n'
        "- secret delivered to sink `vault`, key `calendar/ci-agent`\n\n</details>\n\n"
        '<details>\n<summary>- delete client "calendar/old-bot"</summary>\n\n'
        "- id `C-old-bot`\n\n</details>\n"
    )


def test_the_marker_is_the_first_line_and_cannot_be_broken_out_of() -> None:
    report = DriftReport("P2abc", (), (), (), (), 0)
    assert render_plan_markdown(many_updates(1)).split("\n")[0] == plan_marker("P2abc")
    assert render_drift_markdown(report).split("\n")[0] == drift_marker("P2abc")
    assert plan_marker("P2abc") == "<!-- mcp-reconciler:plan project=P2abc -->"
    assert drift_marker("P2abc") == "<!-- mcp-reconciler:drift project=P2abc -->"
    assert plan_marker("P x-->\n<b>") == "<!-- mcp-reconciler:plan project=P_x--___b_ -->"


def test_the_delete_banner_appears_only_when_something_is_deleted() -> None:
    banner = render_plan_markdown(everything_plan()).split("\n\n")[1]
    assert banner == (
        "> [!WARNING]\n> This plan **deletes 4 objects** (1 server, 3 clients, of which 2 go with their "
        "server). Review the deletes below before you apply it."
    )
    assert "[!WARNING]" not in render_plan_markdown(many_updates(3))


def test_the_summary_counts_every_action_and_a_partial_plan_says_so() -> None:
    text = render_plan_markdown(everything_plan())
    assert (
        "| action | count |\n| --- | ---: |\n| create | 3 |\n| update | 1 |\n| adopt | 1 |\n"
        "| rotate-secret | 1 |\n| delete | 4 |\n"
    ) in text
    assert (
        "> [!NOTE]\n> Partial plan: only the targets `server:calendar`, `server:crm`, `server:legacy` "
        "were planned; other changes may be pending.\n"
    ) in text


def test_each_change_has_one_details_block_with_its_symbol_and_address() -> None:
    text = render_plan_markdown(everything_plan())
    assert SUMMARY.findall(text) == [
        '+ create server "crm"',
        '~ update server "calendar"',
        '+ create client "calendar/ci-agent"',
        '+ create client "crm/copilot"',
        '&gt; adopt client "calendar/handmade"',
        '* rotate-secret client "calendar/ci-agent"',
        '- delete client "calendar/old-bot"',
        '- delete server "legacy"',
    ]
    assert text.count("<details>") == text.count("</details>") == 8
    assert "- secret delivered to sink _(none)_, key `crm/copilot`" in text
    assert (
        '- deletes with it client "legacy/a" (id `C-a`)\n- deletes with it client "legacy/b" (id `C-b`)'
        in text
    )


def test_withheld_changes_are_listed_with_their_reasons() -> None:
    text = render_plan_markdown(everything_plan())
    assert (
        "### Withheld: changes this plan will not make (1)\n\n"
        '- client "calendar/keep": protected (protect: true when last applied)\n'
    ) in text


def test_without_changes_the_plan_says_so_and_still_lists_withheld_ones() -> None:
    withheld = (Withheld('server "legacy"', "legacy", "protected"),)
    text = render_plan_markdown(plan_of(withheld=withheld))
    assert "No changes will be made; the objects below differ from the manifests and are kept.\n" in text
    assert "No changes. The project matches the manifests." not in text  # it does not: see the list
    assert "| action |" not in text
    assert "No changes. The project matches the manifests.\n" in render_plan_markdown(plan_of())
    assert '- server "legacy": protected' in text


def test_long_values_and_many_fields_are_shown_whole_and_the_cap_leaves_out_whole_objects() -> None:
    fields = tuple(FieldChange(f"f{i:02d}", None, "x" * 1000) for i in range(55))
    text = render_plan_markdown(plan_of(server(Action.CREATE, "big", fields=fields)))
    assert f'| `f00` | `"{"x" * 1000}"` |' in text  # never cut: a cut value can hide the change
    assert "`f54`" in text  # every field
    assert "…" not in text
    huge = tuple(FieldChange(f"g{i:02d}", None, "y" * 1000) for i in range(70))  # over the cap alone
    capped = render_plan_markdown(
        plan_of(server(Action.CREATE, "small"), server(Action.CREATE, "huge", fields=huge))
    )
    assert len(capped) <= MARKDOWN_LIMIT
    assert "create server &quot;small&quot;" in capped or 'create server "small"' in capped
    assert "`g00`" not in capped  # the object that does not fit is left out whole ...
    assert "1 more changed object is not shown" in capped  # ... and counted


def test_a_set_like_list_shows_each_item_added_or_removed_whole() -> None:
    urls = [f"https://agents.example.com/callback/{i:02d}-" + "a" * 200 for i in range(10)]
    attacker = "https://zz-attacker.example.net/cb"
    change = FieldChange("approvedCallbackUrls", urls, [*urls, attacker], added=(attacker,), removed=())
    text = render_plan_markdown(plan_of(server(Action.UPDATE, "crm", fields=(change,))))
    assert f'```diff\n+ "{attacker}"\n```' in text
    assert "`approvedCallbackUrls`: 1 added, 0 removed, 10 unchanged not shown" in text
    assert urls[0] not in text  # unchanged context is counted, not shown


def test_a_fence_inside_an_item_cannot_close_the_diff_block() -> None:
    item = "```</details><b>x</b>"
    change = FieldChange("tags", ["a"], ["a", item], added=(item,), removed=())
    text = render_plan_markdown(plan_of(server(Action.UPDATE, "crm", fields=(change,))))
    assert '````diff\n+ "```</details><b>x</b>"\n````' in text


def test_secrets_are_named_by_destination_only_where_one_is_issued() -> None:
    text = render_plan_markdown(everything_plan())
    assert text.count("secret delivered to sink `vault`, key `calendar/ci-agent`") == 2  # create, rotate
    assert "secret delivered to sink `vault`, key `calendar/handmade`" in text
    updated = client(
        Action.UPDATE, "a", fields=(FieldChange("tags", [], ["x"]),), secret=SecretTarget("v", "k")
    )
    assert "secret delivered" not in render_plan_markdown(plan_of(updated))


# ---- escaping --------------------------------------------------------------------------------------


def test_user_data_cannot_break_the_markdown() -> None:
    values = (FieldChange("tags", ["a|b"], ["x`y", "``z``"]),)
    plan = plan_of(
        client(Action.UPDATE, HOSTILE, fields=values, id="C-1"),
        withheld=(Withheld('client "calendar/w"', "calendar", HOSTILE),),
    )
    text = render_plan_markdown(plan)
    assert SUMMARY.findall(text) == [
        '~ update client "calendar/a|b &lt;script&gt;alert(1)&lt;/script&gt; `x` *y* '
        '[z](javascript:0) @&#8203;octocat &amp; co"'
    ]
    assert (
        r'- client "calendar/w": a\|b &lt;script&gt;alert(1)&lt;/script&gt; \`x\` \*y\* '
        r"\[z\](javascript:0) @&#8203;octocat &amp; co"
    ) in text
    assert '| `tags` | `["a\\|b"]` | ```["x`y","``z``"]``` |' in text
    assert "<script>" not in text


def _parser() -> Any:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def test_a_commonmark_parser_reads_hostile_data_back_literally() -> None:
    values = (FieldChange("tags", ["a|b", "<b>"], [HOSTILE]),)
    plan = plan_of(
        client(Action.UPDATE, HOSTILE, fields=values, notes=(HOSTILE,)),
        withheld=(Withheld('client "calendar/w"', "calendar", HOSTILE),),
    )
    tokens = _parser().parse(render_plan_markdown(plan))
    html = [t.content for t in tokens if t.type == "html_block"]
    assert all(
        re.fullmatch(r"(<!--[^>]*-->|<details>\n<summary>[^<>]*</summary>|</details>)\n", h) for h in html
    )
    inline = [t for t in tokens if t.type == "inline"]
    codes = [c.content for t in inline for c in t.children or [] if c.type == "code_inline"]
    assert '["a|b","<b>"]' in codes
    assert '["a|b <script>alert(1)</script> `x` *y* [z](javascript:0) @octocat & co"]' in codes
    said = HOSTILE.replace("@", "@\u200b")
    texts = ["".join(c.content for c in t.children or []) for t in inline]
    assert texts.count(said) == 1  # the note
    assert texts.count(f'client "calendar/w": {said}') == 1
    for token in inline:
        if said in "".join(c.content for c in token.children or []):
            assert {c.type for c in token.children or []} == {"text"}
    widths: list[list[int]] = []  # cells per row, per table
    for token in tokens:
        if token.type == "table_open":
            widths.append([])
        elif token.type == "tr_open":
            widths[-1].append(0)
        elif token.type in ("th_open", "td_open"):
            widths[-1][-1] += 1
    assert [set(w) for w in widths] == [{2}, {3}]  # the summary, then the field table


CONTROLS = "x\x1b]0;pwned\x07\r\n</summary></details>\n\n# h\u202e|`y`\x9b\u2028- z"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_control_characters_are_shown_escaped_and_break_nothing() -> None:
    values = (FieldChange(f"tags[{CONTROLS}]", [CONTROLS], [CONTROLS, "ok"]),)
    plan = plan_of(
        client(Action.UPDATE, CONTROLS, server=CONTROLS, fields=values, id=CONTROLS, notes=(CONTROLS,)),
        server(Action.DELETE, CONTROLS),
        withheld=(Withheld(f'client "calendar/{CONTROLS}"', "calendar", CONTROLS),),
        partial=True,
        targets=(f"server:{CONTROLS}",),
    )
    report = replace(
        drift_report(), orphaned=(f'server "{CONTROLS}"',), unmanaged=(Unmanaged(CONTROLS, CONTROLS),)
    )
    shown = visible(CONTROLS)
    for text in (render_plan_markdown(plan), render_drift_markdown(report)):
        assert RAW.findall(text) == []
        tokens = _parser().parse(text)
        html = [t.content for t in tokens if t.type == "html_block"]
        assert all(
            re.fullmatch(r"(<!--[^>]*-->|<details>\n<summary>[^<>]*</summary>|</details>)\n", h) for h in html
        )
        assert "h1" not in [t.tag for t in tokens if t.type == "heading_open"]  # "# h" started no heading
    plan_tokens = _parser().parse(render_plan_markdown(plan))
    codes = [
        c.content
        for t in plan_tokens
        if t.type == "inline"
        for c in t.children or []
        if c.type == "code_inline"
    ]
    assert shown in codes  # the id, read back as its escaped form
    assert f"tags[{shown}]" in codes
    summaries = SUMMARY.findall(render_plan_markdown(plan))
    assert summaries[0] == html_text(f'~ update client "{CONTROLS}/{CONTROLS}"')
    assert "\\x1b]0;pwned\\x07\\r\\n&lt;/summary&gt;&lt;/details&gt;" in summaries[0]
    widths: list[list[int]] = []
    for token in plan_tokens:
        if token.type == "table_open":
            widths.append([])
        elif token.type == "tr_open":
            widths[-1].append(0)
        elif token.type in ("th_open", "td_open"):
            widths[-1][-1] += 1
    assert [set(w) for w in widths] == [{2}, {3}]


# Mostly pieces that mean something to markdown or HTML, so that their mixtures are tried.
PIECES = "* ** _ _a_ ` `` [ [a](b) ) <a> </ & &amp; &lt; | \\ # - 1. ~~ ~~a~~ ! : @ @a a 0 http://x.y"
MEANINGFUL = st.sampled_from([*PIECES.split(" "), " ", "  ", "\u00a0", "\U0001f600"])
ANY = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
PRINTABLE = st.lists(
    st.one_of(MEANINGFUL, st.text(ANY, min_size=1, max_size=2)), min_size=1, max_size=20
).map("".join)


@given(PRINTABLE)
@example("_a_ *b* `c` ~~d~~ [e](f) <g> &amp; @octocat | \\")
@example("# a")
@example("- a")
@example("1. a")
@example("> a")
@example("\x1b]0;pwned\x07 *a*\r\n- b\u202e|c\x9b")
def test_text_reads_back_as_itself_with_no_formatting(text: str) -> None:
    assume(text.strip())
    # Bidi characters (Cf, which PRINTABLE may hold) read back escaped, as everywhere.
    said = re.sub(r"@(?=[A-Za-z0-9])", "@\u200b", visible(text).strip())
    [_, _, _, item, *_] = _parser().parse("- " + md_text(text))
    assert [(c.type, c.content) for c in item.children] == [("text", said)]
    cell = [t for t in _parser().parse(f"| h |\n| --- |\n| {md_text(text)} |\n") if t.type == "inline"][1]
    assert [(c.type, c.content) for c in cell.children] == [("text", said)]


@given(PRINTABLE)
@example("`")
@example(" `a` ")
@example("a|b\\|c")
@example("   ")
@example("`\x1b[2K\r`|\n</details>\u202e\x9b")
def test_code_spans_read_back_as_themselves_in_text_and_in_tables(text: str) -> None:
    inline = _parser().parseInline(f"x {code(text)} y")[0].children
    assert [c.content for c in inline if c.type == "code_inline"] == [visible(text)]
    table = _parser().parse(f"| h |\n| --- |\n| {code(text, cell=True)} |\n")
    cells = [t for t in table if t.type == "inline"][1].children
    assert [(c.type, c.content) for c in cells] == [("code_inline", visible(text))]


# ---- the size cap ----------------------------------------------------------------------------------


def _check_cut(text: str, plan: Plan, limit: int) -> int:
    """Assert the cut is well made: complete summary, whole leading blocks, a true count of the rest."""
    assert len(text) <= limit
    assert f"| update | {len(plan.changes):,} |" in text
    shown = BLOCK.findall(text)
    assert text.count("<details>") == text.count("</details>") == len(shown)
    for change, block in zip(plan.changes, shown, strict=False):
        assert BLOCK.findall(render_plan_markdown(plan_of(change))) == [block]
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    match = OMITTED.fullmatch(last)
    assert match, last
    left_out = int(match[1].replace(",", ""))
    assert len(shown) + left_out == len(plan.changes)
    assert f"(the comment limit is {limit:,} characters)" in last
    return len(shown)


def test_2000_changes_are_cut_to_whole_blocks_under_githubs_limit() -> None:
    plan = many_updates(2000)
    text = render_plan_markdown(plan)
    assert len(text) <= MARKDOWN_LIMIT < 65_536
    shown = _check_cut(text, plan, MARKDOWN_LIMIT)
    assert text.endswith(
        f"_… {2000 - shown:,} more changed objects are not shown (the comment limit is 60,000 characters); "
        "see the full plan in the job log or the plan artifact._\n"
    )
    assert len(text) > MARKDOWN_LIMIT - len(BLOCK.findall(text)[-1]) - 2  # no block dropped needlessly


@pytest.mark.parametrize("limit", range(MIN_LIMIT, 9_000, 173))
def test_any_limit_is_kept(limit: int) -> None:
    plan = many_updates(30)
    _check_cut(render_plan_markdown(plan, limit=limit), plan, limit)


def test_a_small_limit_and_a_plan_that_fits() -> None:
    plan = many_updates(40)
    assert _check_cut(render_plan_markdown(plan, limit=5_000), plan, 5_000) >= 1
    assert "not shown" not in render_plan_markdown(many_updates(5), limit=5_000)
    with pytest.raises(ValueError, match="at least 4,000"):
        render_plan_markdown(plan, limit=MIN_LIMIT - 1)


def test_one_object_left_out_is_counted_in_the_singular() -> None:
    fields = tuple(FieldChange(f"f{i}", "b" * 200, "a" * 200) for i in range(5))
    plan = plan_of(*(client(Action.UPDATE, f"big-{i}", fields=fields) for i in range(2)))
    text = render_plan_markdown(plan, limit=MIN_LIMIT)
    assert len(BLOCK.findall(text)) == 1
    assert text.endswith(
        "\n_… 1 more changed object is not shown (the comment limit is 4,000 characters); "
        "see the full plan in the job log or the plan artifact._\n"
    )


def test_when_lists_are_cut_too_the_count_names_each_kind_left_out() -> None:
    withheld = tuple(Withheld(f'client "calendar/w-{i:04d}"', "calendar", "protected") for i in range(3000))
    text = render_plan_markdown(replace(many_updates(10), withheld=withheld))
    assert len(text) <= MARKDOWN_LIMIT
    assert "| update | 10 |" in text
    shown = len(re.findall(r'^- client "calendar/w-\d{4}": protected$', text, re.M))
    assert "<details>" not in text
    assert text.endswith(
        f"_… {3000 - shown:,} more withheld changes and 10 more changed objects are not shown "
        "(the comment limit is 60,000 characters); see the full plan in the job log or the plan artifact._\n"
    )


def test_the_cap_counts_emoji_as_javascript_does() -> None:
    wide = (FieldChange("description", "\U0001f600" * 100, "\U0001f389" * 100),)
    plan = plan_of(*(client(Action.UPDATE, f"agent-{i:04d}", fields=wide) for i in range(500)))
    text = render_plan_markdown(plan)
    assert len(text.encode("utf-16-le")) // 2 <= MARKDOWN_LIMIT
    assert "more changed objects are not shown" in text


# ---- drift -----------------------------------------------------------------------------------------


def drift_report(changed: int = 2) -> DriftReport:
    fields = (FieldChange("description", "by hand", "from the manifest"),)
    return DriftReport(
        project_id="P2abc",
        changed=(
            *(client(Action.UPDATE, f"agent-{i:04d}", fields=fields) for i in range(changed)),
            client(Action.ADOPT, "adoptee", secret=SecretTarget("vault", "k")),
        ),
        missing=(server(Action.CREATE, "crm", desired={"name": "crm"}),),
        orphaned=('server "legacy"',),
        unmanaged=(
            Unmanaged('client "calendar/manual"', "C-manual", "set adopt: true"),
            Unmanaged('server "x"', "S-x"),
        ),
        dynamic_clients=3,
    )


def test_a_drift_report_lists_each_class() -> None:
    text = render_drift_markdown(drift_report())
    assert text.startswith(drift_marker("P2abc") + "\n## mcp-reconciler drift: project `P2abc`\n\n")
    assert (
        "| finding | count |\n| --- | ---: |\n| changed | 3 |\n| missing | 1 |\n| orphaned | 1 |\n"
        "| unmanaged | 2 |\n\n3 dynamically registered clients (not drift).\n"
    ) in text
    assert '### Missing: in the manifests, not in Descope (1)\n\n- server "crm"\n' in text
    assert '### Orphaned: managed, but in no manifest (1)\n\n- server "legacy"\n' in text
    assert '- client "calendar/manual" (id `C-manual`): set adopt: true\n- server "x" (id `S-x`)\n' in text
    assert SUMMARY.findall(text) == [
        '~ client "calendar/agent-0000"',
        '~ client "calendar/agent-0001"',
        '~ client "calendar/adoptee" (not yet adopted)',
    ]
    assert "| field | live | manifest |" in text
    assert "secret" not in text


def test_no_drift_says_so() -> None:
    text = render_drift_markdown(DriftReport("P2abc", (), (), (), (), 1))
    assert (
        "No drift. The project matches the manifests.\n\n1 dynamically registered client (not drift).\n"
        in text
    )
    assert "| finding |" not in text


def test_a_large_drift_report_keeps_its_lists_and_cuts_field_details() -> None:
    report = drift_report(changed=2000)
    text = render_drift_markdown(report)
    assert len(text) <= MARKDOWN_LIMIT
    assert "| changed | 2,001 |" in text
    assert '- server "x" (id `S-x`)' in text
    shown = len(BLOCK.findall(text))
    assert text.endswith(
        f"_… {2001 - shown:,} more changed objects are not shown (the comment limit is 60,000 characters); "
        "see the full report in the job log or the drift artifact._\n"
    )


# ---- the JSON forms against their schemas ----------------------------------------------------------


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=schema_registry(), format_checker=format_checker)


def example_manifest() -> Manifest:
    return load_manifest([str(EXAMPLES)], environ={})


def drifted_live(manifest: Manifest) -> LiveState:
    """The examples as applied, then changed by hand: edits, a stale rotation, orphans, hand-made objects."""
    created = build_plan(manifest, LiveState(servers=())).changes
    servers: dict[str, dict[str, Any]] = {
        c.name: {**c.desired, "id": f"S-{c.name}"} for c in created if c.kind is Kind.SERVER
    }
    clients: dict[str, list[dict[str, Any]]] = {name: [] for name in [*servers, "legacy", "handmade"]}
    for c in created:
        if c.kind is Kind.CLIENT:
            clients[c.server or ""].append({**c.desired, "id": f"C-{c.name}", "clientId": f"cid-{c.name}"})
    servers["calendar"]["description"] = "edited by hand"
    agent = next(c for c in clients["calendar"] if c["name"] == "scheduling-agent")
    agent["tags"] = [t for t in agent["tags"] if not t.startswith(ROTATION_PREFIX)] + [
        ROTATION_PREFIX + "2025"
    ]
    del servers["tickets"]
    servers["legacy"] = {"name": "legacy", "id": "S-legacy", "tags": [OWNER]}
    servers["handmade"] = {"name": "handmade", "id": "S-handmade", "tags": []}
    clients["legacy"].append({"name": "old-bot", "id": "C-old-bot", "tags": [OWNER]})
    clients["calendar"] += [
        {"name": "retired", "id": "C-retired", "tags": [OWNER, PROTECT_TAG]},
        {"name": "by-hand", "id": "C-by-hand", "tags": []},
        {"name": "dcr", "id": "C-dcr", "tags": [], "registrationType": assumptions.REGISTRATION_DYNAMIC},
    ]
    return LiveState(
        servers=tuple(LiveServer.from_wire(s) for s in servers.values()),
        clients={f"S-{n}": tuple(LiveClient.from_wire(c, f"S-{n}") for c in cs) for n, cs in clients.items()},
    )


def planned() -> list[Plan]:
    manifest = example_manifest()
    live = drifted_live(manifest)
    full = build_plan(manifest, live, PlanOptions(allow_deletes=10))
    targeted = build_plan(manifest, live, PlanOptions(targets=(Target.parse("server:calendar"),)))
    assert {a for a, n in full.summary.items() if n} == {"create", "update", "rotate-secret", "delete"}
    assert full.withheld
    assert targeted.partial
    return [build_plan(manifest, LiveState(servers=())), full, targeted]


PLANS = [everything_plan(), plan_of(), many_updates(3), *planned()]
PLAN_IDS = ["everything", "empty", "updates", "example-creates", "example-drifted", "example-targeted"]


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_plan_json_matches_its_schema(plan: Plan) -> None:
    data = plan.to_json()
    assert list(_validator("plan.schema.json").iter_errors(data)) == []
    assert list(_validator("plan.schema.json").iter_errors(Plan.from_json(data).to_json())) == []
    assert render_plan_markdown(plan).startswith(plan_marker(plan.project_id))


@pytest.mark.parametrize(
    "report", [drift_report(), DriftReport("P", (), (), (), (), 0)], ids=["drift", "none"]
)
def test_drift_json_matches_its_schema(report: DriftReport) -> None:
    assert list(_validator("drift.schema.json").iter_errors(report.to_json())) == []


def test_detected_drift_matches_its_schema() -> None:
    manifest = example_manifest()
    report = detect_drift(manifest, drifted_live(manifest))
    assert all(report.summary.values())  # every class but duplicated: see test_drift_duplicates
    assert list(_validator("drift.schema.json").iter_errors(report.to_json())) == []
    assert len(render_drift_markdown(report)) <= MARKDOWN_LIMIT


def test_the_schemas_name_exactly_the_keys_that_to_json_writes() -> None:
    plan_schema = load_schema("plan.schema.json")
    data = everything_plan().to_json(signing_key=b"a-plan-signing-key-0123456789")
    assert set(data) == {*plan_schema["required"], "signature"}
    assert set(plan_schema["properties"]) == {*data, "refused"}  # only a refused plan says it is
    assert replace(everything_plan(), refused="over budget").to_json()["refused"] == "over budget"
    assert set(data["madeFrom"]) == set(plan_schema["properties"]["madeFrom"]["properties"])
    client = next(c for c in data["changes"] if "secret" in c)
    server = next(c for c in data["changes"] if c["kind"] == "server")
    deleted = next(c for c in data["changes"] if "cascade" in c)
    assert set(client) | set(server) | set(deleted) == set(plan_schema["$defs"]["change"]["properties"])
    assert set(server) - set(client) == {"surface"}  # a server's change names its surface, a client's none
    # only a delete that takes objects with it; and their secrets, with pruneSecrets
    assert set(deleted) - set(server) == {"cascade", "removeSecrets"}
    assert set(load_schema("drift.schema.json")["properties"]) == set(drift_report().to_json())


def _broken(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("format_version",), 1),
        (("checksum",), "md5:abc"),
        (("summary", "replace"), 0),
        (("changes", 0, "action"), "recreate"),
        (("changes", 0, "secretValue"), "s3cr3t"),
        (("changes", 1, "secret"), {"sink": "vault", "key": "k", "rotation": None}),
        (("changes", 2, "fingerprint"), "not-hex"),
        (("changes", 2, "server"), None),
        (("withheld", 0, "address"), "calendar/keep"),
        (("sinks",), {"vault": {"type": "command", "command": ["sh", "-c", "id"]}}),
        (("madeFrom", "sinks"), {}),
        (("madeFrom", "digests", 'sink "local"'), "not-a-digest"),
        (("changeSet",), "sha256:short"),
        (("signature",), "sha256:" + "0" * 64),
    ],
)
def test_the_plan_schema_is_closed(path: tuple[Any, ...], value: Any) -> None:
    data = _broken(everything_plan().to_json(), path, value)
    assert list(_validator("plan.schema.json").iter_errors(data)) != []
