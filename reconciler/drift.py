"""Drift: the live project compared with the manifests, from the live side (pure).

Findings are *changed* (a managed object differs from its manifest), *missing* (in the manifests,
absent live), *orphaned* (managed, but no longer in any manifest), *unmanaged* (live servers,
and pre-registered clients, without the ownership tag: someone made them by hand, or a manifest
is about to adopt them), and *duplicated* (a name in the manifests that several live objects carry:
plan refuses to choose among them, so drift names them all). Clients that end users registered
dynamically are counted, never reported as drift.

Addresses here are data (the JSON form holds them exactly); the renderers make them safe to show.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from reconciler.descope.wire import LiveState
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

FORMAT_VERSION = 2  # of the JSON form; 2 added duplicated, to the report and to its summary


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

    @property
    def has_drift(self) -> bool:
        return bool(self.changed or self.missing or self.orphaned or self.unmanaged or self.duplicated)

    @property
    def summary(self) -> dict[str, int]:
        """The counts written as GitHub step outputs (see action.yml); the JSON summary adds
        ``duplicated``."""
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
            "summary": {**self.summary, "duplicated": len(self.duplicated)},
            "changed": [c.to_json() for c in self.changed],
            "missing": [c.to_json() for c in self.missing],
            "orphaned": list(self.orphaned),
            "unmanaged": [u.to_json() for u in self.unmanaged],
            "duplicated": [d.to_json() for d in self.duplicated],
        }


ADOPT_HINT = "a manifest declares this name: set adopt: true to take it over"
ADOPTING = "a manifest adopts it: the next apply takes it over"


def detect_drift(manifest: Manifest, live: LiveState) -> DriftReport:
    """Every difference between ``live`` and ``manifest``; never raises for conflicts."""
    plan = build_plan(manifest, live, PlanOptions(prune=True, lenient=True))
    changed = tuple(replace(c, notes=()) for c in plan.changes if c.action is Action.UPDATE)
    deleted = {_address(c) for c in plan.changes if c.action is Action.DELETE}
    adopting = {_address(c) for c in plan.changes if c.action is Action.ADOPT}
    unmanaged, dynamic = _unmanaged(manifest, live, adopting=adopting)
    return DriftReport(
        project_id=plan.project_id,
        changed=changed,
        missing=tuple(c for c in plan.changes if c.action is Action.CREATE),
        orphaned=tuple(sorted(deleted | {w.address for w in plan.withheld})),
        unmanaged=tuple(unmanaged),
        dynamic_clients=dynamic,
        duplicated=tuple(_duplicated(manifest, live)),
    )


def _address(change: Change) -> str:
    """The address as data, as the planner writes it for withheld changes (``Change.address`` is
    escaped for display)."""
    return f'{change.kind} "{change.path_text}"'


def _duplicated(manifest: Manifest, live: LiveState) -> list[Duplicated]:
    """Manifest names that several live objects carry, matched as the planner matches them: roots by
    name, then (under an object that matches once) its children of every registration type by name."""
    found: list[Duplicated] = []

    def walk(wanted: tuple[Desired, ...], parent_id: str | None, kinds: tuple[Kind, ...]) -> None:
        for kind in kinds:
            ids_by_name: dict[str, list[str]] = {}
            for obj in KINDS[kind].live_under(live, parent_id):
                ids_by_name.setdefault(obj.name, []).append(obj.id)
            for desired in (d for d in wanted if d.kind is kind):
                ids = ids_by_name.get(desired.name, [])
                if len(ids) > 1:
                    address = f'{kind} "{"/".join(desired.path)}"'
                    found.append(Duplicated(kind, address, tuple(ids)))
                elif len(ids) == 1:
                    walk(desired.children, ids[0], tuple(d.kind for d in children(kind)))

    walk(desired_objects(manifest), None, tuple(d.kind for d in roots()))
    return found


def _unmanaged(manifest: Manifest, live: LiveState, *, adopting: set[str]) -> tuple[list[Unmanaged], int]:
    """Live objects without the ownership tag (not being adopted), and the count of objects end
    users registered (dynamically or through CIMD): those are neither managed nor drift."""
    owner = manifest.project.ownershipTag
    declared = set(desired_paths(desired_objects(manifest)))
    found: list[Unmanaged] = []
    dynamic = 0
    for kind, path, obj in live_objects(live):
        if registered_elsewhere(obj) is not None:
            dynamic += 1
            continue
        if owner not in obj.tags:
            address = f'{kind} "{"/".join(path)}"'
            found.append(Unmanaged(address, obj.id, _note(address, (kind, path) in declared, adopting)))
    return found, dynamic


def _note(address: str, declared: bool, adopting: set[str]) -> str:
    if address in adopting:
        return ADOPTING
    return ADOPT_HINT if declared else ""
