"""Drift: the live project compared with the manifests, from the live side (pure).

Findings are *changed* (a managed object differs from its manifest), *missing* (in the manifests,
absent live), *orphaned* (managed, but no longer in any manifest), and *unmanaged* (live servers,
and pre-registered clients, without the ownership tag: someone made them by hand, or a manifest
is about to adopt them). Clients that end users registered dynamically are counted, never
reported as drift.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from reconciler import assumptions
from reconciler.models import Manifest
from reconciler.plan import Action, Change
from reconciler.planner import PlanOptions, build_plan
from reconciler.wire import LiveState


@dataclass(frozen=True)
class Unmanaged:
    """A live object without the ownership tag."""

    address: str
    id: str
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "id": self.id, "note": self.note}


@dataclass(frozen=True)
class DriftReport:
    project_id: str
    changed: tuple[Change, ...]
    missing: tuple[Change, ...]
    orphaned: tuple[str, ...]
    unmanaged: tuple[Unmanaged, ...]
    dynamic_clients: int

    @property
    def has_drift(self) -> bool:
        return bool(self.changed or self.missing or self.orphaned or self.unmanaged)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "changed": len(self.changed),
            "missing": len(self.missing),
            "orphaned": len(self.orphaned),
            "unmanaged": len(self.unmanaged),
            "dynamicClients": self.dynamic_clients,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "project": self.project_id,
            "drift": self.has_drift,
            "summary": self.summary,
            "changed": [c.to_json() for c in self.changed],
            "missing": [c.to_json() for c in self.missing],
            "orphaned": list(self.orphaned),
            "unmanaged": [u.to_json() for u in self.unmanaged],
        }


ADOPT_HINT = "a manifest declares this name: set adopt: true to take it over"
ADOPTING = "a manifest adopts it: the next apply takes it over"


def detect_drift(manifest: Manifest, live: LiveState) -> DriftReport:
    """Every difference between ``live`` and ``manifest``; never raises for conflicts."""
    plan = build_plan(manifest, live, PlanOptions(prune=True, lenient=True))
    changed = tuple(replace(c, notes=()) for c in plan.changes if c.action is Action.UPDATE)
    deleted = {c.address for c in plan.changes if c.action is Action.DELETE}
    adopting = {c.address for c in plan.changes if c.action is Action.ADOPT}
    unmanaged, dynamic = _unmanaged(manifest, live, adopting=adopting)
    return DriftReport(
        project_id=plan.project_id,
        changed=changed,
        missing=tuple(c for c in plan.changes if c.action is Action.CREATE),
        orphaned=tuple(sorted(deleted | {w.address for w in plan.withheld})),
        unmanaged=tuple(unmanaged),
        dynamic_clients=dynamic,
    )


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
