"""Markdown for GitHub pull-request comments and step summaries: plans and drift reports (pure).

The first line is a hidden marker (``plan_marker``/``drift_marker``) by which a workflow finds its
one comment and updates it in place. The head (heading, banners, summary table) is always whole.
The objects follow as blocks, a ``<details>`` per changed object and a list item per other finding,
and when the text would pass ``limit`` whole blocks are dropped from the end and a closing line
counts them. Short lists (withheld changes; missing, orphaned and unmanaged objects) come before the
bulky field tables, so the cap takes field details first.

Names, values, notes and reasons come from manifests and the live API, so each is escaped for where
it lands: HTML text inside ``<summary>``, backslash-escaped markdown in lists, code spans for paths
and values. ``@name`` gets a zero-width space so that a comment never notifies anyone. Before that,
control, bidi and separator characters are written as visible escapes (``reconciler.textsafe``):
they could end a line, a table row or a list item, reorder what a reviewer reads, or reach a
terminal when the markdown is printed there (``--format markdown``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.drift import DriftReport, Duplicated, Unmanaged
from reconciler.findings import SEVERITIES, Finding, counts
from reconciler.kinds import KINDS
from reconciler.plan import ACTION_SYMBOLS, Action, Change, FieldChange, Plan, Withheld
from reconciler.render.text import NO_CHANGES, NO_CHANGES_BUT_WITHHELD, WONT
from reconciler.textsafe import visible

MARKDOWN_LIMIT = 60_000  # GitHub rejects comments over 65,536 characters; keep a margin
MIN_LIMIT = 4_000  # the head is bounded (cut names, at most MAX_TARGETS targets) well below this
TEXT_LIMIT = 300  # characters of one name, note or reason (values are never cut: they are the change)
MAX_TARGETS = 10

SYMBOLS = ACTION_SYMBOLS

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
_BLOCK_START = re.compile(r"^(?:([#+=-])|(\d+)([.)]))")
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_MARKER_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def plan_marker(project_id: str) -> str:
    """The hidden first line of a plan comment, to find and update that one comment."""
    return f"<!-- mcp-reconciler:plan project={_marker_id(project_id)} -->"


def changeset_marker(change_set: str) -> str:
    """The hidden line carrying the plan's change-set digest, for workflows to compare plans."""
    return f"<!-- mcp-reconciler:changeset {_MARKER_UNSAFE.sub('_', change_set)[:100]} -->"


def drift_marker(project_id: str) -> str:
    """The hidden first line of a drift comment."""
    return f"<!-- mcp-reconciler:drift project={_marker_id(project_id)} -->"


def _marker_id(project_id: str) -> str:
    # Only characters that cannot end the comment ("-->") or the line, so the marker stays one token.
    return _MARKER_UNSAFE.sub("_", project_id)[:200]


# ---- escaping ------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str, limit: int = TEXT_LIMIT) -> str:
    return _cut(visible(text).strip(), limit)


def _unmention(text: str) -> str:
    return _MENTION.sub("@&#8203;", text)


def html_text(text: str) -> str:
    """``text`` for an HTML context such as ``<summary>``: one line, entities for ``& < >``."""
    return _unmention(html.escape(_one_line(text), quote=False))


def md_text(text: str) -> str:
    """``text`` for markdown, table cells included: nothing in it formats, links, nests or pings."""
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(_one_line(text), quote=False))
    escaped = _BLOCK_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", escaped)
    return _unmention(escaped)


def code(text: str, *, cell: bool = False) -> str:
    """A code span showing ``text`` literally; in a table ``cell``, pipes are escaped as GFM requires."""
    text = visible(text) or " "
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # A span that starts or ends with a backtick or space needs padding, which the parser strips
    # (one space from each end, unless the span is all spaces).
    pad = " " if text.strip(" ") and (text[0] in "` " or text[-1] in "` ") else ""
    body = text.replace("|", "\\|") if cell else text
    return f"{fence}{pad}{body}{pad}{fence}"


def json_value(value: Any) -> str:
    """A value as compact JSON, whole: a value that changes is never cut (two cut values can look
    alike while they differ); the comment's size cap leaves out whole objects instead."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _count(n: int, singular: str, *, plural: str) -> str:
    return f"{n:,} {singular if n == 1 else plural}"


# ---- assembly under the cap ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """A heading and whole blocks, any suffix of which may be left out; ``noun`` counts them."""

    heading: str
    blocks: tuple[str, ...]
    noun: tuple[str, str]
    separator: str = "\n"


def _assemble(head: str, sections: Sequence[_Section], *, limit: int, whole: str) -> str:
    """``head`` and as many leading blocks as fit in ``limit``, then a line counting the rest."""
    if limit < MIN_LIMIT:
        raise ValueError(f"the markdown limit must be at least {MIN_LIMIT:,} characters, not {limit:,}")
    sections = [s for s in sections if s.blocks]
    everything = [len(s.blocks) for s in sections]
    text = _join(head, sections, everything)
    if _size(text) <= limit:
        return text
    reserve = _size(_omitted_line(sections, everything, limit=limit, whole=whole)) + 2
    shown = _fit(sections, budget=limit - _size(head) - reserve)
    omitted = [len(s.blocks) - n for s, n in zip(sections, shown, strict=True)]
    trailer = _omitted_line(sections, omitted, limit=limit, whole=whole)
    return f"{_join(head, sections, shown)}\n{trailer}\n"


def _size(text: str) -> int:
    """Length in UTF-16 code units: never less than a count of characters, however GitHub counts."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _join(head: str, sections: Sequence[_Section], shown: Sequence[int]) -> str:
    parts = [
        f"{s.heading}\n\n{s.separator.join(s.blocks[:n])}\n"
        for s, n in zip(sections, shown, strict=True)
        if n
    ]
    return head + "".join("\n" + part for part in parts)


def _fit(sections: Sequence[_Section], *, budget: int) -> list[int]:
    """How many leading blocks of each section fit in ``budget``; the cut is one prefix of all blocks."""
    shown = [0] * len(sections)
    used = 0
    for index, section in enumerate(sections):
        for block in section.blocks:
            # The exact growth of _join's text: a section's first block brings "\n", heading, "\n\n", "\n".
            cost = _size(block) + (len(section.separator) if shown[index] else _size(section.heading) + 4)
            if used + cost > budget:
                return shown
            used += cost
            shown[index] += 1
    return shown


def _omitted_line(sections: Sequence[_Section], omitted: Sequence[int], *, limit: int, whole: str) -> str:
    parts = [
        _count(n, f"more {s.noun[0]}", plural=f"more {s.noun[1]}")
        for s, n in zip(sections, omitted, strict=True)
        if n
    ]
    verb = "is" if len(parts) == 1 and sum(omitted) == 1 else "are"
    why = f"the comment limit is {limit:,} characters"
    return f"_… {' and '.join(parts)} {verb} not shown ({why}); see {whole}._"


# ---- shared pieces -------------------------------------------------------------------------------


def _heading(marker: str, *, title: str, project_id: str) -> str:
    return f"{marker}\n## {title}: project {code(_cut(project_id, 100))}\n\n"


def _summary_table(header: str, counts: Sequence[tuple[str, int]]) -> str:
    rows = "".join(f"| {name} | {n:,} |\n" for name, n in counts)
    return f"| {header} | count |\n| --- | ---: |\n{rows}"


def _field_table(fields: Sequence[FieldChange], *, columns: tuple[str, str] | None) -> str:
    """The fields as a table: path, before and after, or path and value when ``columns`` is None."""
    if columns is None:
        lines = ["| field | value |", "| --- | --- |"]
        lines += [f"| {code(f.path, cell=True)} | {_cell_value(f.after)} |" for f in fields]
    else:
        lines = [f"| field | {columns[0]} | {columns[1]} |", "| --- | --- | --- |"]
        lines += [
            f"| {code(f.path, cell=True)} | {_cell_value(f.before)} | {_cell_value(f.after)} |"
            for f in fields
        ]
    return "\n".join(lines)


def _item_diff(item: FieldChange) -> str:
    """A set-like list's change as a ``diff`` block: one ``+``/``-`` line per item added or removed,
    the unchanged items counted, not shown."""
    added, removed = item.added or (), item.removed or ()
    kept = len(item.after or ()) - len(added)
    counts = [f"{len(added):,} added", f"{len(removed):,} removed"]
    if kept:
        counts.append(f"{kept:,} unchanged not shown")
    lines = [f"+ {visible(json_value(i))}" for i in added] + [f"- {visible(json_value(i))}" for i in removed]
    return f"{code(item.path)}: {', '.join(counts)}\n\n{_fenced(lines, info='diff')}"


def _fenced(lines: Sequence[str], *, info: str) -> str:
    """``lines`` as a fenced code block whose fence no line can close (longer than any backtick run)."""
    body = "\n".join(lines)
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", body))])
    return f"{fence}{info}\n{body}\n{fence}"


def _cell_value(value: Any) -> str:
    return "_absent_" if value is None else code(json_value(value), cell=True)


def _details(summary: str, body: Sequence[str]) -> str:
    """One object as a ``<details>`` block; blank lines let GitHub read the body as markdown."""
    inner = "\n\n".join(body) if body else "_No field changes._"
    return f"<details>\n<summary>{summary}</summary>\n\n{inner}\n\n</details>"


def _facts(change: Change, *, plan: Plan | None) -> str:
    """The id, what a delete takes with it, where a planned secret goes (or why it cannot), and the
    notes, as a list (never a secret: plans hold none)."""
    items = []
    if change.id:
        items.append(f"- id {code(change.id)}")
    for below in change.cascade:
        items.append(f"- deletes with it {md_text(change.cascade_address(below))} (id {code(below.id)})")
    for gone in change.removes_secrets:
        whose = "" if change.server is not None else f" of client {code(gone.client)}"
        items.append(f"- secret{whose} removed from sink {code(gone.sink)}, key {code(gone.key)}")
    if plan is not None and change.secret is not None and change.issues_secret:
        sink = code(change.secret.sink) if change.secret.sink else "_(none)_"
        problem = plan.sink_problem(change)
        if problem is None:
            items.append(f"- secret delivered to sink {sink}, key {code(change.secret.key)}")
        else:
            key = code(change.secret.key)
            items.append(
                f"- :warning: **the secret cannot be delivered**: sink {sink} (key {key}) failed its "
                f"check: {md_text(problem)}; apply will not {WONT[change.action]}"
            )
    items += [f"- {md_text(note)}" for note in change.notes]
    return "\n".join(items)


def _columns(change: Change, *, planned: bool) -> tuple[str, str] | None:
    # A create has nothing before it: its table lists the values it sets.
    if change.action is Action.CREATE:
        return None
    return ("before", "after") if planned else ("live", "manifest")


def _change_block(change: Change, *, summary: str, plan: Plan | None) -> str:
    body = []
    table = [f for f in change.fields if not f.itemized]
    if table:
        body.append(_field_table(table, columns=_columns(change, planned=plan is not None)))
    body += [_item_diff(f) for f in change.fields if f.itemized]
    facts = _facts(change, plan=plan)
    if facts:
        body.append(facts)
    return _details(summary, body)


# ---- plans ---------------------------------------------------------------------------------------


def render_plan_markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment of at most ``limit`` characters."""
    marker = f"{plan_marker(plan.project_id)}\n{changeset_marker(plan.change_set)}"
    head = _heading(marker, title="mcp-reconciler plan", project_id=plan.project_id)
    head += _refusal(plan) + _delete_banner(plan) + _sink_banner(plan) + _partial_note(plan)
    if plan.has_changes:
        head += _summary_table("action", [(a.value, n) for a, n in _action_counts(plan)])
        # The apply run shows the digest of the plan it is about to apply: equal digests, equal changes.
        head += f"\nChange set {code(plan.change_set)}\n"
    else:
        head += (NO_CHANGES if not plan.withheld else NO_CHANGES_BUT_WITHHELD) + "\n"
    head += _findings_banner(plan.findings)
    new = [f for f in plan.findings if f.status == "new"]
    sections = [
        # First: what the change makes worse is what a security reviewer must not miss under the cap.
        _Section(
            f"### Security findings this change brings ({len(new):,})",
            tuple(_finding_item(f) for f in new),
            ("new finding", "new findings"),
        ),
        _Section(
            f"### Withheld: changes this plan will not make ({len(plan.withheld):,})",
            tuple(_withheld_item(w) for w in plan.withheld),
            ("withheld change", "withheld changes"),
        ),
        _Section(
            f"### Changes ({len(plan.changes):,})",
            tuple(_plan_block(c, plan) for c in plan.changes),
            ("changed object", "changed objects"),
            separator="\n\n",
        ),
    ]
    resolved = [f for f in plan.findings if f.status == "resolved"]
    existing = [f for f in plan.findings if f.status == "existing"]
    sections += [
        _Section(
            f"### Security findings this change resolves ({len(resolved):,})",
            tuple(_finding_item(f) for f in resolved),
            ("resolved finding", "resolved findings"),
        ),
        _Section(
            f"### Security findings already live ({len(existing):,})",
            tuple(_finding_item(f) for f in existing),
            ("existing finding", "existing findings"),
        ),
    ]
    whole = "the full plan in the job log or the plan artifact"
    return _assemble(head, sections, limit=limit, whole=whole)


def _action_counts(plan: Plan) -> list[tuple[Action, int]]:
    summary = plan.summary
    return [(action, summary[action.value]) for action in Action]


def _refusal(plan: Plan) -> str:
    if plan.refused is None:
        return ""
    return f"> [!CAUTION]\n> **Refused, not applied:** {md_text(plan.refused)}.\n\n"


def _delete_banner(plan: Plan) -> str:
    """How many objects the plan deletes, by kind, counting what each delete takes with it as the
    summary and the delete budget do."""
    deletes = [c for c in plan.changes if c.action is Action.DELETE]
    if not deletes:
        return ""
    counts = plan.deletes_by_kind()
    shown = ", ".join(_count(n, kind.value, plural=KINDS[kind].plural) for kind, n in counts.items() if n)
    cascaded = sum(len(c.cascade) for c in deletes)
    parents = " or ".join(sorted({c.kind.value for c in deletes if c.cascade}))
    goes = "goes with its" if cascaded == 1 else "go with their"
    with_parent = f", of which {cascaded:,} {goes} {parents}" if cascaded else ""
    return (
        "> [!WARNING]\n"
        f"> This plan **deletes {_count(plan.deletes, 'object', plural='objects')}** ({shown}{with_parent}). "
        "Review the deletes below before you apply it.\n\n"
    )


def _sink_banner(plan: Plan) -> str:
    affected = [c for c in plan.changes if plan.sink_problem(c) is not None]
    if not affected:
        return ""
    sinks = ", ".join(code(_cut(name, 100)) for name in sorted({c.secret.sink for c in affected if c.secret}))
    return (
        "> [!WARNING]\n"
        f"> {_count(len(affected), 'change', plural='changes')} cannot deliver a secret: sink {sinks} failed "
        "its check (see each change below); apply will not make them until the sink works.\n\n"
    )


def _partial_note(plan: Plan) -> str:
    if not plan.partial:
        return ""
    targets = ", ".join(code(_cut(t, 100)) for t in plan.targets[:MAX_TARGETS])
    if len(plan.targets) > MAX_TARGETS:
        targets += f" and {len(plan.targets) - MAX_TARGETS:,} more"
    scope = f"only the targets {targets} were planned" if targets else "only some objects were planned"
    return f"> [!NOTE]\n> Partial plan: {scope}; other changes may be pending.\n\n"


def _plan_block(change: Change, plan: Plan) -> str:
    summary = html_text(f"{SYMBOLS[change.action]} {change.action.value} {change.address}{change.on_surface}")
    return _change_block(change, summary=summary, plan=plan)


def _withheld_item(withheld: Withheld) -> str:
    return f"- {md_text(withheld.address)}: {md_text(withheld.reason)}"


# ---- security findings ----------------------------------------------------------------------------

SEVERITY_BADGES = {"critical": "🟥 critical", "high": "🟧 high", "medium": "🟨 medium", "low": "🟦 low"}


def _findings_banner(findings: Sequence[Finding]) -> str:
    """A line for the plan's head: how many findings the change brings, by severity, and the others."""
    if not findings:
        return ""
    new = [f for f in findings if f.status == "new"]
    existing = sum(1 for f in findings if f.status == "existing" and f.excepted is None)
    resolved = sum(1 for f in findings if f.status == "resolved")
    others = f"{existing:,} already live, {resolved:,} resolved by this change"
    counted = [f for f in new if f.excepted is None]
    if not counted:
        return f"\nSecurity: no new findings ({others}).\n"
    worst = counted[0].severity  # findings come worst first
    kind = "CAUTION" if worst in ("critical", "high") else "WARNING"
    brings = _count(len(counted), "security finding", plural="security findings")
    return f"\n> [!{kind}]\n> This change brings {brings} ({_tally(counted)}); {others}.\n"


def _tally(findings: Sequence[Finding]) -> str:
    counted = counts(findings)
    return ", ".join(f"{counted[s]:,} {s}" for s in reversed(SEVERITIES) if counted[s])


def _finding_item(finding: Finding) -> str:
    """One finding as a list item: severity, rule, object and field, what is wrong, where."""
    at = finding.location
    where = f" at {code(f'{at.file}:{at.line}:{at.column}')}" if at is not None else ""
    field = f" {code(finding.field)}" if finding.field else ""
    item = (
        f"- {SEVERITY_BADGES[finding.severity]} {code(finding.rule)} {md_text(finding.name)}: "
        f"{md_text(finding.address)}{field}{where}: {md_text(_one_line(finding.message))}"
    )
    if finding.excepted is not None:
        item += f" (accepted by the policy: {md_text(_one_line(finding.excepted))})"
    return item


def render_findings_markdown(
    findings: Sequence[Finding], *, project_id: str, limit: int = MARKDOWN_LIMIT
) -> str:
    """``lint``'s findings as a pull-request comment: counts, then every finding, worst first."""
    head = _heading(lint_marker(project_id), title="mcp-reconciler lint", project_id=project_id)
    shown = [f for f in findings if f.status != "resolved"]
    counted = [f for f in shown if f.excepted is None]
    if counted:
        head += _summary_table("severity", [(s, counts(counted)[s]) for s in reversed(SEVERITIES)])
    else:
        head += "No security findings.\n"
    accepted = len(shown) - len(counted)
    if accepted:
        head += f"\n{_count(accepted, 'finding', plural='findings')} accepted by the policy's exceptions.\n"
    section = _Section(
        f"### Findings ({len(shown):,})", tuple(_finding_item(f) for f in shown), ("finding", "findings")
    )
    return _assemble(head, [section], limit=limit, whole="mcp-reconciler lint in the job log")


def lint_marker(project_id: str) -> str:
    """The hidden first line of a lint comment, to find and update that one comment."""
    return f"<!-- mcp-reconciler:lint project={_marker_id(project_id)} -->"


# ---- drift ---------------------------------------------------------------------------------------


def render_drift_markdown(report: DriftReport, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The drift report as a pull-request comment or step summary of at most ``limit`` characters."""
    head = _heading(
        drift_marker(report.project_id), title="mcp-reconciler drift", project_id=report.project_id
    )
    summary = report.summary
    if report.has_drift:
        counts = [(name, summary[name]) for name in ("changed", "missing", "orphaned", "unmanaged")]
        if report.duplicated:  # rare (plan refuses them): a row only when there are some
            counts.append(("duplicated", len(report.duplicated)))
        head += _summary_table("finding", counts) + "\n"
    else:
        head += "No drift. The project matches the manifests.\n\n"
    noun = "dynamically registered client"
    dynamic = _count(report.dynamic_clients, noun, plural=noun + "s")
    head += f"{dynamic} (not drift).\n"
    if report.ignored:
        ignored = _count(report.ignored, "object", plural="objects")
        head += f"{ignored} ignored (other owners or the Project's ignore rules).\n"
    sections = [
        _Section(
            f"### Duplicated: one manifest name, several live objects ({len(report.duplicated):,})",
            tuple(_duplicated_item(d) for d in report.duplicated),
            ("duplicated name", "duplicated names"),
        ),
        _Section(
            f"### Missing: in the manifests, not in Descope ({len(report.missing):,})",
            tuple(f"- {md_text(c.address)}" for c in report.missing),
            ("missing object", "missing objects"),
        ),
        _Section(
            f"### Orphaned: managed, but in no manifest ({len(report.orphaned):,})",
            tuple(f"- {md_text(address)}" for address in report.orphaned),
            ("orphaned object", "orphaned objects"),
        ),
        _Section(
            f"### Unmanaged: made by hand, without the ownership tag ({len(report.unmanaged):,})",
            tuple(_unmanaged_item(u) for u in report.unmanaged),
            ("unmanaged object", "unmanaged objects"),
        ),
        _Section(
            f"### Changed: differs from its manifest ({len(report.changed):,})",
            tuple(_drift_block(c) for c in report.changed),
            ("changed object", "changed objects"),
            separator="\n\n",
        ),
    ]
    whole = "the full report in the job log or the drift artifact"
    return _assemble(head, sections, limit=limit, whole=whole)


def _duplicated_item(item: Duplicated) -> str:
    ids = ", ".join(code(i) for i in item.ids)
    live = _count(len(item.ids), f"live {item.kind}", plural=f"live {item.kind}s")
    return f"- {md_text(item.address)} matches {live} (ids {ids}): plan refuses until all but one go"


def _unmanaged_item(item: Unmanaged) -> str:
    note = f": {md_text(item.note)}" if item.note else ""
    return f"- {md_text(item.address)} (id {code(item.id)}){note}"


def _drift_block(change: Change) -> str:
    suffix = " (not yet adopted)" if change.action is Action.ADOPT else ""
    summary = html_text(f"~ {change.address}{suffix}")
    return _change_block(change, summary=summary, plan=None)
