"""Terminal renderings of plans and drift reports, in the manner of ``terraform plan`` (pure).

``+`` create, ``~`` update (only the changed fields), ``-`` delete, ``*`` rotate a secret, ``>``
adopt; in drift, ``?`` unmanaged and ``!`` duplicated. Colour is ANSI, only when asked for (the CLI
asks when stdout is a terminal).

Every name, id, path, value, note and reason comes from a manifest or the live API, so each passes
through :func:`reconciler.textsafe.visible` before it is put into a line: a control or bidi character
is shown as an escape, on a terminal or not, and only the colour codes added here reach the terminal.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from reconciler.drift import DriftReport, Duplicated
from reconciler.plan import ACTION_SYMBOLS, Action, ApplyResult, Change, FieldChange, Plan
from reconciler.render.findings import plan_findings_text
from reconciler.textsafe import visible

SYMBOLS = ACTION_SYMBOLS
VERBS = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.ADOPT: "will be adopted (taken over) and updated",
    Action.ROTATE_SECRET: "will have its secret rotated",
    Action.DELETE: "will be deleted",
}
COLOURS = {"+": "32", "~": "33", ">": "36", "*": "35", "-": "31", "?": "90", "!": "31"}
# What apply leaves undone for a change whose secret has nowhere to go.
WONT = {
    Action.CREATE: "create it",
    Action.ADOPT: "adopt it",
    Action.ROTATE_SECRET: "rotate its secret",
}


def value(data: Any) -> str:
    """A value as compact JSON, the way people read it in a diff; JSON escapes C0 controls, and
    :func:`visible` the C1 controls and bidi characters that JSON leaves as they are."""
    return visible(json.dumps(data, ensure_ascii=False, separators=(", ", ": ")))


class _Writer:
    def __init__(self, *, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, symbol: str, *, text: str) -> str:
        return f"\x1b[{COLOURS[symbol]}m{text}\x1b[0m" if self.colour else text

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def change(self, change: Change, *, verb: str | None = None, plan: Plan | None = None) -> None:
        """One change: its headline, fields, what it deletes with it and, in a ``plan``, where its
        secret goes (and why it cannot, when plan found the sink unusable)."""
        symbol = SYMBOLS[change.action]
        headline = f"{symbol} {visible(change.address)}{change.on_surface} {verb or VERBS[change.action]}"
        self.add("  " + self.paint(symbol, text=headline))
        for item in change.fields:
            self.field(change.action, item)
        for below in change.cascade:
            line = f"- {change.cascade_address(below)} will be deleted with it ({visible(below.id)})"
            self.add("      " + self.paint("-", text=line))
        for gone in change.removes_secrets:
            whose = "" if change.server is not None else f" of client {value(gone.client)}"
            self.add(f"      # secret{whose} removed from sink {value(gone.sink)}, key {value(gone.key)}")
        if plan is not None and change.secret is not None and change.issues_secret:
            self.secret(change, plan.sink_problem(change))
        for note in change.notes:
            self.add(f"      # {visible(note)}")

    def secret(self, change: Change, problem: str | None) -> None:
        assert change.secret is not None
        sink = f"sink {value(change.secret.sink)}" if change.secret.sink else "no sink"
        self.add(f"      # secret goes to {sink}, key {value(change.secret.key)}")
        if problem is not None:
            warning = f"! the sink cannot take it: {visible(problem)}; apply will not {WONT[change.action]}"
            self.add("      " + self.paint("!", text=warning))

    def field(self, action: Action, item: FieldChange) -> None:
        path = visible(item.path)  # paths name live keys too, e.g. a domain policy's pattern
        if item.added is not None and item.removed is not None:
            counts = f"{len(item.added):,} added, {len(item.removed):,} removed"
            self.add("      " + self.paint("~", text=f"~ {path}: {counts}"))
            self.items("+", item.added)
            self.items("-", item.removed)
        elif (action is Action.CREATE or item.before is None) and isinstance(item.after, list) and item.after:
            self.add("      " + self.paint("+", text=f"+ {path}:"))
            self.items("+", item.after)
        elif action is Action.CREATE or item.before is None:
            self.add("      " + self.paint("+", text=f"+ {path}: {value(item.after)}"))
        elif item.after is None:
            self.add("      " + self.paint("-", text=f"- {path}: {value(item.before)}"))
        else:
            change = f"~ {path}: {value(item.before)} -> {value(item.after)}"
            self.add("      " + self.paint("~", text=change))

    def items(self, symbol: str, items: Iterable[Any]) -> None:
        """One line per item of a list, the way a diff shows lines added or removed."""
        for item in items:
            self.add("          " + self.paint(symbol, text=f"{symbol} {value(item)}"))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def summary_line(plan: Plan) -> str:
    """``Plan: 2 to create, 1 to update, 0 to delete, 1 secret to rotate.`` (adoptions when any)."""
    counts = plan.summary
    parts = [f"{counts['create']} to create", f"{counts['update']} to update"]
    if counts["adopt"]:
        parts.append(f"{counts['adopt']} to adopt")
    parts.append(f"{counts['delete']} to delete")
    rotations = counts["rotate-secret"]
    parts.append(f"{rotations} secret{'s' if rotations != 1 else ''} to rotate")
    return "Plan: " + ", ".join(parts) + "."


NO_CHANGES = "No changes. The project matches the manifests."
NO_CHANGES_BUT_WITHHELD = "No changes will be made; the objects below differ from the manifests and are kept."


def render_plan_text(plan: Plan, *, colour: bool = False) -> str:
    out = _Writer(colour=colour)
    scope = f" (partial: {visible(', '.join(plan.targets))})" if plan.partial else ""
    out.add(f"Project {visible(plan.project_id)}{scope}")
    out.add()
    if not plan.changes:
        out.add(NO_CHANGES if not plan.withheld else NO_CHANGES_BUT_WITHHELD)
    for change in plan.changes:
        out.change(change, plan=plan)
    if plan.withheld:
        out.add()
        out.add(f"Not changed ({len(plan.withheld):,}):")
        for item in plan.withheld:
            out.add(f"  {visible(item.address)} is kept: {visible(item.reason)}")
    if plan.findings:
        out.add()
        for line in plan_findings_text(plan.findings, colour=colour):
            out.add(line)
    if plan.changes:
        out.add()
        out.add(summary_line(plan))
    return out.text()


def render_drift_text(report: DriftReport, *, colour: bool = False) -> str:
    out = _Writer(colour=colour)
    out.add(f"Project {visible(report.project_id)}")
    out.add()
    _duplicated(out, report.duplicated)
    _section(out, "Changed (managed objects that differ from their manifests):", report.changed, "differs")
    _section(out, "Missing (in the manifests, absent live):", report.missing, "is missing")
    if report.orphaned:
        out.add("Orphaned (managed, but in no manifest any more):")
        for address in report.orphaned:
            out.add("  " + out.paint("-", text=f"- {visible(address)}"))
        out.add()
    if report.unmanaged:
        out.add("Unmanaged (no ownership tag: adopt them in a manifest, or delete them):")
        for item in report.unmanaged:
            note = f": {visible(item.note)}" if item.note else ""
            out.add("  " + out.paint("?", text=f"? {visible(item.address)} ({visible(item.id)}){note}"))
        out.add()
    if report.dynamic_clients:
        plural = "s" if report.dynamic_clients != 1 else ""
        out.add(f"{report.dynamic_clients} dynamically registered client{plural} (not drift).")
    if report.ignored:
        plural = "s" if report.ignored != 1 else ""
        out.add(f"{report.ignored} object{plural} ignored (other owners or the Project's ignore rules).")
    counts = report.summary
    if report.has_drift:
        # Duplicates are rare (plan refuses them): counted only when there are some.
        duplicated = f", {len(report.duplicated)} duplicated" if report.duplicated else ""
        out.add(
            f"Drift: {counts['changed']} changed, {counts['missing']} missing, "
            f"{counts['orphaned']} orphaned, {counts['unmanaged']} unmanaged{duplicated}."
        )
    else:
        out.add("No drift. The project matches the manifests.")
    return out.text()


def _duplicated(out: _Writer, duplicated: Iterable[Duplicated]) -> None:
    duplicated = list(duplicated)
    if not duplicated:
        return
    out.add("Duplicated (one manifest name, several live objects: plan refuses until all but one go):")
    for item in duplicated:
        ids = ", ".join(visible(i) for i in item.ids)
        line = f"! {visible(item.address)} matches {len(item.ids)} live {item.kind}s ({ids})"
        out.add("  " + out.paint("!", text=line))
    out.add()


def _section(out: _Writer, title: str, changes: Iterable[Change], verb: str) -> None:
    changes = list(changes)
    if not changes:
        return
    out.add(title)
    for change in changes:
        out.change(change, verb=verb)
    out.add()


def apply_summary(result: ApplyResult) -> str:
    """The last line of an apply: true even after a partial failure."""
    done = Counter(change.action for change in result.done)
    parts = [
        f"{done[Action.CREATE]} created",
        f"{done[Action.UPDATE]} updated",
        f"{done[Action.ADOPT]} adopted",
        f"{sum(change.removes for change in result.done)} deleted",
        f"{done[Action.ROTATE_SECRET]} secrets rotated",
    ]
    outcome = f"{len(result.failed)} failed, {len(result.skipped)} skipped"
    secrets = f"{result.delivered} secrets delivered"
    if result.undelivered:
        secrets += f", {len(result.undelivered)} NOT delivered"
    return f"Apply finished in {result.seconds:.1f} s: {', '.join(parts)}; {outcome}; {secrets}."
