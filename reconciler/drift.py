"""Drift: the live project compared with the manifests, from the live side (pure).

Findings are *changed* (a managed object differs from its manifest), *missing* (in the manifests,
absent live), *orphaned* (managed, but no longer in any manifest), *unmanaged* (live servers,
and pre-registered clients, without the ownership tag: someone made them by hand, or a manifest
is about to adopt them), and *duplicated* (a name in the manifests that several live objects carry:
plan refuses to choose among them, so drift names them all). Clients that end users registered
dynamically are counted, never reported as drift; so are the objects that are someone else's
(another reconciler's, or named by the Project's ignore rules: ``reconciler.ignore``), unless a
manifest entry names one, which plan refuses or adopts.

Addresses here are data (the JSON form holds them exactly); the renderers make them safe to show.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from reconciler.descope.wire import LiveState
from reconciler.ignore import Scope
from reconciler.kinds import (
    KINDS,
    Desired,
    children,
    desired_objects,
    desired_paths,
    live_objects,
    registered_elsewhere,
    roots,
)
from reconciler.models import Manifest
from reconciler.plan import Action, Change, Kind
from reconciler.planner import PlanOptions, build_plan

FORMAT_VERSION = 3  # of the JSON form; 2 added duplicated, 3 the summary's ignored


@dataclass(frozen=True)
class Unmanaged:
    """A live object without the ownership tag."""

    address: str
    id: str
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "id": self.id, "note": self.note}


@dataclass(frozen=True)
class Duplicated:
    """A name in the manifests that more than one live object of its kind carries."""

    kind: Kind
    address: str
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "address": self.address, "ids": list(self.ids)}


@dataclass(frozen=True)
class DriftReport:
    project_id: str
    changed: tuple[Change, ...]
    missing: tuple[Change, ...]
    orphaned: tuple[str, ...]
    unmanaged: tuple[Unmanaged, ...]
    dynamic_clients: int
    duplicated: tuple[Duplicated, ...] = ()
    ignored: int = 0  # live objects that are someone else's: counted, never drift

    @property
    def has_drift(self) -> bool:
        return bool(self.changed or self.missing or self.orphaned or self.unmanaged or self.duplicated)

    @property
    def summary(self) -> dict[str, int]:
        """The counts written as GitHub step outputs (see action.yml), which keep their names; the
        JSON summary adds ``duplicated`` and ``ignored``."""
        return {
            "changed": len(self.changed),
            "missing": len(self.missing),
            "orphaned": len(self.orphaned),
            "unmanaged": len(self.unmanaged),
            "dynamicClients": self.dynamic_clients,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "project": self.project_id,
            "drift": self.has_drift,
            "summary": {**self.summary, "duplicated": len(self.duplicated), "ignored": self.ignored},
            "changed": [c.to_json() for c in self.changed],
            "missing": [c.to_json() for c in self.missing],
            "orphaned": list(self.orphaned),
            "unmanaged": [u.to_json() for u in self.unmanaged],
            "duplicated": [d.to_json() for d in self.duplicated],
        }


ADOPT_HINT = "a manifest declares this name: set adopt: true to take it over"
ADOPTING = "a manifest adopts it: the next apply takes it over"
OTHER_OWNER_HINT = (
    'a manifest declares this name, but another reconciler owns it (ownership tag "{tag}"): set adopt: '
    "true to take it over, or rename the manifest entry"
)
IGNORED_HINT = (
    "a manifest declares this name, but the Project ignores it ({rule}): rename the manifest entry or "
    "change the rule"
)


def detect_drift(manifest: Manifest, live: LiveState) -> DriftReport:
    """Every difference between ``live`` and ``manifest``; never raises for conflicts."""
    plan = build_plan(manifest, live, PlanOptions(prune=True, lenient=True))
    changed = tuple(replace(c, notes=()) for c in plan.changes if c.action is Action.UPDATE)
    deleted = {_address(c) for c in plan.changes if c.action is Action.DELETE}
    adopting = {_address(c) for c in plan.changes if c.action is Action.ADOPT}
    scope = Scope.of(manifest.project)
    duplicated, claimed = _matched(manifest, live, scope)
    unmanaged, dynamic, ignored = _unmanaged(manifest, live, scope, adopting=adopting, claimed=claimed)
    return DriftReport(
        project_id=plan.project_id,
        changed=changed,
        missing=tuple(c for c in plan.changes if c.action is Action.CREATE),
        orphaned=tuple(sorted(deleted | {w.address for w in plan.withheld})),
        unmanaged=tuple(unmanaged),
        dynamic_clients=dynamic,
        duplicated=tuple(duplicated),
        ignored=ignored,
    )


def _address(change: Change) -> str:
    """The address as data, as the planner writes it for withheld changes (``Change.address`` is
    escaped for display)."""
    return f'{change.kind} "{change.path_text}"'


def _matched(manifest: Manifest, live: LiveState, scope: Scope) -> tuple[list[Duplicated], dict[str, str]]:
    """Manifest names matched as the planner matches them (roots by name, then, under an object that
    matches once, its children of every registration type by name; an ignore rule's objects never,
    another reconciler's only when no other has the name): the names several live objects carry, and
    the objects of someone else's that a manifest entry names, with a note for each (by id)."""
    duplicated: list[Duplicated] = []
    claimed: dict[str, str] = {}

    def walk(
        wanted: tuple[Desired, ...], parent_id: str | None, path: tuple[str, ...], kinds: tuple[Kind, ...]
    ) -> None:
        for kind in kinds:
            candidates = scope.candidates(KINDS[kind].live_under(live, parent_id), under=path)
            for desired in (d for d in wanted if d.kind is kind):
                matches = candidates.matches(desired.name)
                address = f'{kind} "{"/".join(desired.path)}"'
                if len(matches) > 1:
                    duplicated.append(Duplicated(kind, address, tuple(m.id for m in matches)))
                elif len(matches) == 1:
                    other = scope.other_owner(matches[0].tags)
                    if other is not None:
                        claimed[matches[0].id] = OTHER_OWNER_HINT.format(tag=other)
                    walk(desired.children, matches[0].id, desired.path, tuple(d.kind for d in children(kind)))
                for obj, rule in [] if matches else candidates.ignored.get(desired.name, []):
                    claimed[obj.id] = IGNORED_HINT.format(rule=rule)

    walk(desired_objects(manifest), None, (), tuple(d.kind for d in roots()))
    return duplicated, claimed


def _unmanaged(
    manifest: Manifest, live: LiveState, scope: Scope, *, adopting: set[str], claimed: dict[str, str]
) -> tuple[list[Unmanaged], int, int]:
    """Live objects without the ownership tag (not being adopted), the count of objects end users
    registered (dynamically or through CIMD), and the count of objects that are someone else's and
    that no manifest entry names: those are neither managed nor drift."""
    owner = manifest.project.ownershipTag
    declared = set(desired_paths(desired_objects(manifest)))
    others = scope.ignored(live, claimed=claimed.keys())
    found: list[Unmanaged] = []
    dynamic = ignored = 0
    for kind, path, obj in live_objects(live):
        if (kind, obj.id) in others:
            ignored += 1
            continue
        if registered_elsewhere(obj) is not None:
            dynamic += 1
            continue
        if owner not in obj.tags:
            address = f'{kind} "{"/".join(path)}"'
            note = _note(address, (kind, path) in declared, adopting)
            found.append(Unmanaged(address, obj.id, claimed.get(obj.id, note) if note != ADOPTING else note))
    return found, dynamic, ignored


def _note(address: str, declared: bool, adopting: set[str]) -> str:
    if address in adopting:
        return ADOPTING
    return ADOPT_HINT if declared else ""
