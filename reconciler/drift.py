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

from reconciler import assumptions
from reconciler.models import Manifest
from reconciler.plan import Action, Change, Kind
from reconciler.planner import PlanOptions, build_plan
from reconciler.wire import LiveServer, LiveState

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
    name = f"{change.server}/{change.name}" if change.kind is Kind.CLIENT else change.name
    return f'{change.kind} "{name}"'


def _duplicated(manifest: Manifest, live: LiveState) -> list[Duplicated]:
    """Manifest names that several live objects carry, matched as the planner matches them: servers
    by name, then (under a server that matches once) clients of every registration type by name."""
    by_name: dict[str, list[LiveServer]] = {}
    for server in live.servers:
        by_name.setdefault(server.name, []).append(server)
    found: list[Duplicated] = []
    for spec in manifest.servers:
        servers = by_name.get(spec.name, [])
        if len(servers) > 1:
            found.append(Duplicated(Kind.SERVER, f'server "{spec.name}"', tuple(s.id for s in servers)))
        if len(servers) != 1:
            continue
        ids_by_name: dict[str, list[str]] = {}
        for client in live.clients_of(servers[0].id):
            ids_by_name.setdefault(client.name, []).append(client.id)
        for wanted in spec.clients:
            ids = ids_by_name.get(wanted.name, [])
            if len(ids) > 1:
                found.append(Duplicated(Kind.CLIENT, f'client "{spec.name}/{wanted.name}"', tuple(ids)))
    return found


def _unmanaged(manifest: Manifest, live: LiveState, *, adopting: set[str]) -> tuple[list[Unmanaged], int]:
    """Live objects without the ownership tag (not being adopted), and the count of dynamic clients."""
    owner = manifest.project.ownershipTag
    declared = {s.name: {c.name for c in s.clients} for s in manifest.servers}
    found: list[Unmanaged] = []
    dynamic = 0
    for server in live.servers:
        address = f'server "{server.name}"'
        if owner not in server.tags:
            found.append(Unmanaged(address, server.id, _note(address, server.name in declared, adopting)))
        for client in live.clients_of(server.id):
            if client.registration_type not in ("", assumptions.REGISTRATION_PRE_REGISTERED):
                dynamic += 1
                continue
            address = f'client "{server.name}/{client.name}"'
            if owner not in client.tags:
                wanted = client.name in declared.get(server.name, set())
                found.append(Unmanaged(address, client.id, _note(address, wanted, adopting)))
    return found, dynamic


def _note(address: str, declared: bool, adopting: set[str]) -> str:
    if address in adopting:
        return ADOPTING
    return ADOPT_HINT if declared else ""
